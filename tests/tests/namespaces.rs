//! Namespaces: new ones, shared ones, joined ones (by path), user namespaces with mappings,
//! and the sysctls that go with them.

use codex_tests::*;
use std::fs;
use std::os::unix::fs::MetadataExt;

const ALL: &[(&str, &str)] = &[
    ("pid", "pid"),
    ("network", "net"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("mount", "mnt"),
    ("cgroup", "cgroup"),
];

fn host_ns(ns: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// `name link` lines for each namespace of the container process.
fn container_ns(ctx: &TestCtx, b: &mut Bundle) -> Vec<(String, String)> {
    let o = ctx.run_sh(
        b,
        "for n in pid net ipc uts mnt cgroup user; do echo $n $(readlink /proc/self/ns/$n); done",
    );
    o.lines()
        .iter()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
}

fn ns_of(list: &[(String, String)], ns: &str) -> String {
    list.iter()
        .find(|(n, _)| n == ns)
        .map(|(_, l)| l.clone())
        .unwrap()
}

#[test]
fn configured_namespaces_are_new_and_the_others_are_the_hosts() {
    let ctx = TestCtx::new("ns-new");
    let mut b = ctx.bundle();
    b.namespaces(&["pid", "network", "ipc", "uts", "mount", "cgroup"]);
    let list = container_ns(&ctx, &mut b);
    for (_, ns) in ALL {
        assert_ne!(ns_of(&list, ns), host_ns(ns), "{ns} namespace must be new");
    }
    assert_eq!(
        ns_of(&list, "user"),
        host_ns("user"),
        "no user namespace was asked for"
    );
}

#[test]
fn omitted_namespaces_are_shared_with_the_host() {
    let ctx = TestCtx::new("ns-shared");
    let mut b = ctx.bundle();
    b.namespaces(&["mount", "pid"]).remove("/hostname");
    let list = container_ns(&ctx, &mut b);
    for ns in ["net", "ipc", "uts", "cgroup", "user"] {
        assert_eq!(ns_of(&list, ns), host_ns(ns), "{ns} must be the host's");
    }
    assert_ne!(ns_of(&list, "mnt"), host_ns("mnt"));
}

#[test]
fn new_network_namespace_has_only_loopback() {
    let ctx = TestCtx::new("netns-lo");
    let mut b = ctx.bundle();
    let o = ctx.run_sh(&mut b, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    assert_eq!(o.lines(), vec!["lo"], "{o:?}");
}

#[test]
fn container_joins_an_existing_network_namespace_by_path() {
    let ctx = TestCtx::new("netns-join");
    let ns = ctx.new_netns();
    host_sh(&format!(
        "nsenter --net={0} ip link set lo up && nsenter --net={0} ip addr add 10.213.7.1/32 dev lo",
        ns.display()
    ))
    .assert_ok();
    let inode = fs::metadata(&ns).unwrap().ino();
    let mut b = ctx.bundle();
    b.namespace("network", Some(&ns));
    let o = ctx.run_sh(&mut b, "readlink /proc/self/ns/net; ip addr show lo");
    assert_eq!(o.lines()[0], format!("net:[{inode}]"), "{o:?}");
    assert!(o.stdout.contains("10.213.7.1"), "{o:?}");
}

#[test]
fn joining_a_namespace_path_that_does_not_exist_fails() {
    let ctx = TestCtx::new("netns-missing");
    let mut b = ctx.bundle();
    b.namespace("network", Some(&ctx.path("no-such-netns")));
    b.sh("true");
    let id = ctx.id("missing");
    ctx.run(&b, &id, &[]).assert_refused_naming("no-such-netns");
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn sysctl_is_set_in_the_containers_network_namespace_only() {
    let ctx = TestCtx::new("sysctl-net");
    let host = || fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let before = host();
    let mut b = ctx.bundle();
    b.sysctl("net.ipv4.ip_forward", "1");
    let o = ctx.run_sh(&mut b, "cat /proc/sys/net/ipv4/ip_forward");
    assert_eq!(o.stdout.trim(), "1");
    assert_eq!(host(), before, "the host's ip_forward changed");
}

#[test]
fn sysctl_is_set_in_the_containers_ipc_namespace_only() {
    let ctx = TestCtx::new("sysctl-ipc");
    let host = || fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let before = host();
    let mut b = ctx.bundle();
    b.sysctl("kernel.shmmax", "123456789");
    let o = ctx.run_sh(&mut b, "cat /proc/sys/kernel/shmmax");
    assert_eq!(o.stdout.trim(), "123456789");
    assert_eq!(host(), before, "the host's shmmax changed");
}

#[test]
fn network_sysctl_without_a_network_namespace_is_refused() {
    let ctx = TestCtx::new("sysctl-hostnet");
    let host = || fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let before = host();
    let mut b = ctx.bundle();
    b.remove_namespace("network");
    b.sysctl(
        "net.ipv4.ip_forward",
        if before.trim() == "1" { "0" } else { "1" },
    );
    b.sh("true");
    let id = ctx.id("hostnet");
    ctx.run(&b, &id, &[])
        .assert_refused_naming("net.ipv4.ip_forward");
    assert_eq!(host(), before, "the host's ip_forward changed");
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn user_namespace_maps_container_root_to_an_unprivileged_host_uid() {
    let ctx = TestCtx::new("userns");
    let mut b = ctx.bundle();
    b.user_namespace(100000, 65536);
    b.sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; echo ready; exec sleep 1000");
    let id = ctx.id("userns");
    ctx.create_and_start(&b, &id);
    let out = ctx.wait_for_stdout(&id, "ready");
    let norm: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        norm,
        vec!["0 100000 65536", "0 100000 65536", "0", "0", "ready"],
        "{out:?}"
    );
    let pid = ctx.rt.pid(&id);
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(
        status_field(&st, "Uid").unwrap().split_whitespace().next(),
        Some("100000"),
        "container root must be host uid 100000: {st}"
    );
    assert_eq!(
        status_field(&st, "Gid").unwrap().split_whitespace().next(),
        Some("100000")
    );
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        fs::read_link("/proc/self/ns/user").unwrap()
    );
}

#[test]
fn cgroup_namespace_makes_the_containers_cgroup_its_root() {
    let ctx = TestCtx::new("cgroupns");
    let mut b = ctx.bundle();
    let o = ctx.run_sh(&mut b, "cat /proc/self/cgroup");
    // pids and memory on a host with v1 controllers, the v2 line (0::) on a pure v2 host;
    // without the namespace each shows the container's own cgroup (control:
    // container_is_in_a_cgroup_named_after_its_id in cgroups.rs)
    for c in placement_controllers() {
        assert_eq!(
            parse_cgroup_line(&o.stdout, c).as_deref(),
            Some("/"),
            "the {c:?} cgroup is not virtualised: {o:?}"
        );
    }
}

#[test]
fn ipc_namespace_hides_the_hosts_message_queues_and_shm() {
    let ctx = TestCtx::new("ipcns");
    // a SysV shm segment and a SysV message queue on the host
    // SAFETY: plain shmget/shmctl/msgget/msgctl syscalls.
    let shmid = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(shmid >= 0, "shmget");
    ctx.on_cleanup(move || unsafe {
        libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut());
    });
    let msqid = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(msqid >= 0, "msgget");
    ctx.on_cleanup(move || unsafe {
        libc::msgctl(msqid, libc::IPC_RMID, std::ptr::null_mut());
    });
    // the second column of /proc/sysvipc/{shm,msg} is the id
    let lists = |text: &str, id: i32| {
        text.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
    };
    let probe = format!(
        "grep -c '^ *[0-9]* *{shmid} ' /proc/sysvipc/shm; grep -c '^ *[0-9]* *{msqid} ' /proc/sysvipc/msg; true"
    );
    assert!(lists(
        &fs::read_to_string("/proc/sysvipc/shm").unwrap(),
        shmid
    ));
    assert!(lists(
        &fs::read_to_string("/proc/sysvipc/msg").unwrap(),
        msqid
    ));
    // Control: without an IPC namespace the container sees both (so the probe can).
    let mut shared = ctx.bundle();
    shared.remove_namespace("ipc");
    let c = ctx.run_sh(&mut shared, &probe);
    assert_eq!(c.lines(), ["1", "1"], "control: {c:?}");
    let mut b = ctx.bundle();
    let o = ctx.run_sh(&mut b, &probe);
    assert_eq!(
        o.lines(),
        ["0", "0"],
        "the container sees the host's shm segment or message queue: {o:?}"
    );
}

#[test]
fn hostname_without_a_uts_namespace_is_refused() {
    let ctx = TestCtx::new("hostname-no-uts");
    let before = host_sh("hostname").stdout;
    let mut b = ctx.bundle();
    b.remove_namespace("uts").hostname("must-not-leak");
    b.sh("true");
    let id = ctx.id("nouts");
    ctx.run(&b, &id, &[]).assert_refused_naming("hostname");
    assert_eq!(
        host_sh("hostname").stdout,
        before,
        "the host's hostname changed"
    );
    assert!(!ctx.rt.root_has_entry(&id));
}
