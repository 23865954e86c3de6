//! Container networking as the runtime leaves it: a new network namespace has its
//! loopback up (as with runc and crun), a joined one is left as its owner made it.

use codex_tests::*;

/// Shows lo's flags, then serves one line with busybox `nc -l` and sends it to
/// itself over 127.0.0.1; prints `GOT:<line>` when it arrived.
/// (busybox nc stops serving when its stdin ends, hence the `sleep |`.)
const LOOPBACK_PROBE: &str = "ip link show lo; \
    sleep 5 | nc -l -p 7777 > /dev/shm/got 2>/dev/null & \
    sleep 0.3; echo hello-lo | nc -w 2 127.0.0.1 7777; \
    sleep 0.2; kill $! 2>/dev/null; echo GOT:$(cat /dev/shm/got)";

fn lo_flags(out: &str) -> String {
    out.lines()
        .find(|l| l.contains(": lo:"))
        .unwrap_or_else(|| panic!("no `lo:` line in {out:?}"))
        .to_string()
}

#[test]
fn new_network_namespace_has_loopback_up_and_reachable() {
    let ctx = TestCtx::new("net-lo-up");
    let mut b = ctx.bundle();
    assert!(
        b.has_namespace("network"),
        "the fixture asks for a new netns"
    );
    let o = ctx.run_sh(&mut b, LOOPBACK_PROBE);
    let flags = lo_flags(&o.stdout);
    assert!(flags.contains(",UP"), "lo must be up: {flags}");
    assert!(
        o.stdout.contains("GOT:hello-lo"),
        "a service must reach itself on 127.0.0.1: {}",
        o.stdout
    );
}

/// The control for the test above: the same probe sees a down loopback, and fails to
/// connect, in a joined namespace whose lo nobody brought up.
#[test]
fn joined_network_namespace_is_left_as_it_is() {
    let ctx = TestCtx::new("net-lo-joined");
    let ns = ctx.new_netns();
    let mut b = ctx.bundle();
    b.namespace("network", Some(&ns));
    let o = ctx.run_sh(&mut b, LOOPBACK_PROBE);
    let flags = lo_flags(&o.stdout);
    assert!(!flags.contains(",UP"), "lo must stay down: {flags}");
    assert!(
        !o.stdout.contains("GOT:hello-lo"),
        "nothing can be reached over a down lo: {}",
        o.stdout
    );
    // And from outside, the namespace's lo is still down after the container ran.
    let after = host_sh(&format!(
        "nsenter --net={} ip -o link show lo",
        ns.display()
    ));
    after.assert_ok();
    assert!(!after.stdout.contains(",UP"), "{}", after.stdout);
}

/// With a user namespace the new network namespace belongs to it; container root may
/// bring lo up there, and does.
#[test]
fn new_network_namespace_in_a_user_namespace_has_loopback_up() {
    let ctx = TestCtx::new("net-lo-userns");
    let mut b = ctx.bundle();
    b.user_namespace(100000, 65536);
    let o = ctx.run_sh(&mut b, "ip link show lo");
    let flags = lo_flags(&o.stdout);
    assert!(flags.contains(",UP"), "lo must be up: {flags}");
}
