//! In-backend tests: logic that needs no second session and no commit. Anything about NOTIFY
//! delivery or concurrent claims lives in the `tests/` crate, against a real cluster.

use pgrx::prelude::*;

#[pg_test]
fn channel_names_fit_identifiers() {
    let name =
        Spi::get_one::<String>("SELECT colony_assign.channel(repeat('ü', 1000), 't\"''', NULL)")
            .unwrap()
            .unwrap();
    assert_eq!(name.len(), colony_proto::CHANNEL_LEN);
    assert!(name.starts_with("ca_b_"));
}
