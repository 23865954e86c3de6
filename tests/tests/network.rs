//! Container networking as the runtime leaves it: a new network namespace has its
//! loopback up (as with runc and crun), a joined one is left as its owner made it.

use codex_tests::*;

/// Shows lo's flags, then serves one line with busybox `nc -l` and sends it to
/// itself over 127.0.0.1; prints `listening` once the kernel lists the listener (port 7777
/// is 1E61 in /proc/net/tcp, state 0A), and `GOT:<line>` with what arrived. Every wait is
/// for an event (listener up, data written), bounded at 10 s, not a fixed sleep.
/// (busybox nc stops serving when its stdin ends, hence the `sleep |`.)
const LOOPBACK_PROBE: &str = "ip link show lo; \
    sleep 60 | nc -l -p 7777 > /dev/shm/got 2>/dev/null & \
    i=0; until cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':1E61 [0-9A-F:]* 0A '; \
      do [ $i -ge 200 ] && break; sleep 0.05; i=$((i+1)); done; \
    [ $i -lt 200 ] && echo listening; \
    if echo hello-lo | nc -w 2 127.0.0.1 7777; then \
      i=0; until [ -s /dev/shm/got ] || [ $i -ge 200 ]; do sleep 0.05; i=$((i+1)); done; fi; \
    kill $! 2>/dev/null; echo GOT:$(cat /dev/shm/got)";

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
    assert!(o.stdout.contains("listening"), "{}", o.stdout);
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
    // the server was up: the failure below is the network's, not a missing listener
    assert!(o.stdout.contains("listening"), "{}", o.stdout);
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
