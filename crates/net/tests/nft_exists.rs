//! Root-run: `nft::ip_table_exists` (nfnetlink GETTABLE) agrees with the `nft` binary,
//! in a network namespace of this test's thread only.

use std::process::Command;

use codex_net::nft;

#[test]
fn table_existence_over_nfnetlink_matches_nft() {
    std::thread::spawn(|| {
        // SAFETY: unshare of this thread's network namespace only (the netns is per
        // thread); the thread and its children are the only users.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let nft_cmd = |args: &[&str]| {
            let st = Command::new("nft").args(args).status().expect("run nft");
            assert!(st.success(), "nft {args:?}");
        };
        assert!(!nft::ip_table_exists("codex_t1").unwrap());
        nft_cmd(&["add", "table", "ip", "codex_t1"]);
        assert!(nft::ip_table_exists("codex_t1").unwrap());
        // Another family's table of that name, or another name, is not it.
        nft_cmd(&["add", "table", "inet", "codex_t2"]);
        assert!(!nft::ip_table_exists("codex_t2").unwrap());
        nft_cmd(&["delete", "table", "ip", "codex_t1"]);
        assert!(!nft::ip_table_exists("codex_t1").unwrap());
    })
    .join()
    .unwrap();
}
