//! Channel names, as SQL functions. The derivation itself lives in `colony-proto` so the
//! coordinator computes exactly the same names without asking the database.

use crate::error::required;
use colony_proto::{Key, executor_keys};
use pgrx::prelude::*;

/// The channel for processes of `executor_type` at `location` in `colony`; a NULL or empty
/// location gives the type's broadcast channel (location-less processes). Safe for any input.
#[pg_extern(immutable, parallel_safe)]
pub fn channel(
    colony: Option<&str>,
    executor_type: Option<&str>,
    location: Option<&str>,
) -> String {
    let colony = required(colony, "colony");
    let executor_type = required(executor_type, "executor_type");
    Key::untargeted(colony, executor_type, location).channel()
}

/// The channels an executor with these attributes must LISTEN on (used by `channels()`).
#[pg_extern(immutable, parallel_safe)]
fn _executor_channels(
    colony: &str,
    executor_type: &str,
    location: Option<&str>,
    executor: &str,
) -> Vec<String> {
    executor_keys(colony, executor_type, location, executor)
        .iter()
        .map(Key::channel)
        .collect()
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn any_input_gives_a_short_plain_identifier() {
        for (colony, executor_type, location) in [
            ("c", "t", Some("l")),
            ("ü☃", "t\"';--", None),
            ("c", "t", Some("")),
        ] {
            let name = super::channel(Some(colony), Some(executor_type), location);
            assert_eq!(name.len(), colony_proto::CHANNEL_LEN);
        }
        let long =
            Spi::get_one::<String>("SELECT colony_assign.channel(repeat('ü', 1000), 't', NULL)")
                .unwrap()
                .unwrap();
        assert_eq!(long.len(), colony_proto::CHANNEL_LEN);
        assert!(
            long.starts_with("ca_b_"),
            "NULL location is the broadcast key"
        );
    }

    #[pg_test]
    fn empty_location_is_the_broadcast_key() {
        assert_eq!(
            super::channel(Some("c"), Some("t"), Some("")),
            super::channel(Some("c"), Some("t"), None)
        );
    }

    #[pg_test(error = "colony must not be NULL")]
    fn null_colony_is_an_error() {
        Spi::run("SELECT colony_assign.channel(NULL, 't', NULL)").unwrap();
    }
}
