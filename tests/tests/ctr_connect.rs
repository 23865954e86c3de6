//! `network connect` / `network disconnect` on running and created containers: a new
//! interface in the running container with an address from the network, its name and
//! aliases resolvable at once by the containers already on that network (their hosts
//! files are rewritten in place), the default route staying with the first network and
//! moving when that one goes, the address freed on disconnect and handed out again, and
//! errors that name the field. Every command runs in the `Ctr` fixture's own network
//! namespace: the host's network is never touched.

use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

fn ip_on(c: &Ctr, name: &str, network: &str) -> Option<String> {
    c.inspect(name)["networks"][network]["ip"]
        .as_str()
        .map(str::to_string)
}

fn gateway_of(c: &Ctr, network: &str) -> String {
    let o = c.run(&["network", "inspect", network]);
    o.assert_ok();
    o.json()[0]["gateway"].as_str().unwrap().to_string()
}

/// `sh -c script` in container `name`.
fn sh(c: &Ctr, name: &str, script: &str) -> Out {
    c.run(&["exec", name, "sh", "-c", script])
}

fn run_d(c: &Ctr, name: &str, network: &str, script: &str) {
    c.run(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        "busybox",
        "sh",
        "-c",
        script,
    ])
    .assert_ok();
}

const SERVE: &str = "echo served-by-web > /tmp/index.html && exec httpd -f -p 8080 -h /tmp";

/// Fetches web's page from `client` at `host` (a name or an address).
fn fetch(c: &Ctr, client: &str, host: &str) -> Out {
    sh(c, client, &format!("wget -q -O - http://{host}:8080/"))
}

#[test]
fn a_running_container_joins_a_network_is_reached_by_alias_and_leaves_it() {
    let c = Ctr::new();
    c.run(&["network", "create", "front"]).assert_ok();
    c.run(&["network", "create", "back"]).assert_ok();
    run_d(&c, "web", "front", SERVE);
    // Started before web joins `back`: its hosts file was written without web.
    run_d(&c, "client", "back", "exec sleep 1000");
    let front_ip = ip_on(&c, "web", "front").unwrap();
    assert!(ip_on(&c, "web", "back").is_none());
    // Control: the server answers on front (from the namespace the engine runs in),
    // and client cannot resolve web's names yet nor reach front at all.
    let wait = format!(
        "i=0; until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | {} nc -w 1 {front_ip} 8080 | grep -q served; \
         do i=$((i+1)); [ $i -gt 50 ] && exit 9; sleep 0.2; done",
        fixture_dir().join("rootfs/bin/busybox").display()
    );
    c.netns().sh(&wait).assert_ok();
    let o = fetch(&c, "client", "webalias");
    assert!(!o.ok(), "resolved before the connect: {o:?}");
    let hosts_inode = sh(&c, "web", "stat -c %i /etc/hosts");
    hosts_inode.assert_ok();

    let o = c.run(&["network", "connect", "--alias", "webalias", "back", "web"]);
    o.assert_ok();
    let back_ip = ip_on(&c, "web", "back").expect("an address on back");
    let events = std::fs::read_to_string(c.root.join("events.jsonl")).unwrap();
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"network-connect\"") && l.contains("\"back\"")),
        "{events}"
    );
    let v = c.inspect("web");
    assert_eq!(
        v["networks"]["back"]["aliases"],
        serde_json::json!(["webalias"])
    );
    // The running container has the new interface with that address...
    let o = sh(&c, "web", "ip -o -4 addr; ip route");
    o.assert_ok();
    assert!(o.stdout.contains(&format!("inet {back_ip}/")), "{o:?}");
    assert!(o.stdout.contains(&format!("inet {front_ip}/")), "{o:?}");
    // ... and the first network keeps the default route.
    let front_gw = gateway_of(&c, "front");
    let back_gw = gateway_of(&c, "back");
    assert!(
        o.stdout.contains(&format!("default via {front_gw}")),
        "{o:?}"
    );
    // client, already running, reaches web by alias and by name at once.
    for host in ["webalias", "web"] {
        let o = fetch(&c, "client", host);
        assert!(
            o.ok() && o.stdout.contains("served-by-web"),
            "{host}: {o:?}"
        );
    }
    // web's own hosts file (the same inode, seen live) lists client and its new address.
    let o = sh(&c, "web", "stat -c %i /etc/hosts; cat /etc/hosts");
    o.assert_ok();
    assert!(o.stdout.starts_with(hosts_inode.stdout.trim()), "{o:?}");
    assert!(o.stdout.contains(&format!("{back_ip}\t")), "{o:?}");
    assert!(o.stdout.contains("client"), "{o:?}");

    // Leaving front (the default route's network) moves the default route to back.
    c.run(&["network", "disconnect", "front", "web"])
        .assert_ok();
    let o = sh(&c, "web", "ip -o -4 addr; ip route");
    assert!(!o.stdout.contains(&format!("inet {front_ip}/")), "{o:?}");
    assert!(
        o.stdout.contains(&format!("default via {back_gw}")),
        "{o:?}"
    );

    // Leaving back: client can neither resolve web nor reach its old address.
    c.run(&["network", "disconnect", "back", "web"]).assert_ok();
    assert!(ip_on(&c, "web", "back").is_none());
    let o = sh(&c, "client", "cat /etc/hosts");
    assert!(!o.stdout.contains("webalias"), "{o:?}");
    assert!(!fetch(&c, "client", "webalias").ok());
    let o = sh(&c, "client", &format!("nc -w 2 {back_ip} 8080 </dev/null"));
    assert!(!o.ok(), "web still reachable at {back_ip}: {o:?}");
    let o = sh(&c, "web", "ip -o link");
    assert!(!o.stdout.contains("eth"), "interfaces left: {o:?}");

    // The address was released: the next container to connect gets it again.
    run_d(&c, "next", "front", "exec sleep 1000");
    c.run(&["network", "connect", "back", "next"]).assert_ok();
    assert_eq!(ip_on(&c, "next", "back").as_deref(), Some(back_ip.as_str()));
    // next's file lists client (back) at once; after `network rm -f back` it does not.
    let o = sh(&c, "next", "cat /etc/hosts");
    assert!(o.stdout.contains("client"), "{o:?}");
    c.run(&["network", "rm", "-f", "back"]).assert_ok();
    let o = sh(&c, "next", "cat /etc/hosts");
    assert!(o.ok() && !o.stdout.contains("client"), "{o:?}");

    for n in ["web", "client", "next"] {
        c.run(&["rm", "-f", n]).assert_ok();
    }
    c.run(&["network", "rm", "front"]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(10), || c
            .netns()
            .links()
            .iter()
            .all(|l| !l.starts_with("cv") && !l.starts_with("cx-"))),
        "links left: {:?}",
        c.netns().links()
    );
}

#[test]
fn a_created_container_connected_with_an_address_gets_it_at_start() {
    let c = Ctr::new();
    c.run(&["network", "create", "--subnet", "10.89.41.0/24", "extra"])
        .assert_ok();
    c.run(&[
        "create",
        "--name",
        "late",
        "--network",
        "bridge",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr; cat /etc/hosts",
    ])
    .assert_ok();
    c.run(&[
        "network",
        "connect",
        "--ip",
        "10.89.41.50",
        "--alias",
        "lately",
        "extra",
        "late",
    ])
    .assert_ok();
    assert_eq!(ip_on(&c, "late", "extra").as_deref(), Some("10.89.41.50"));
    c.run(&["start", "late"]).assert_ok();
    let o = c.run(&["wait", "late"]);
    o.assert_ok();
    let o = c.run(&["logs", "late"]);
    assert!(o.stdout.contains("inet 10.89.41.50/24"), "{o:?}");
    assert!(o.stdout.contains("10.89.41.50\t"), "{o:?}");
    // A stopped container leaves a network as well; its address is free again.
    c.run(&["network", "disconnect", "extra", "late"])
        .assert_ok();
    run_d(&c, "other", "extra", "exec sleep 1000");
    c.run(&["rm", "-f", "other"]).assert_ok();
    c.run(&["network", "connect", "--ip", "10.89.41.50", "extra", "late"])
        .assert_ok();
    c.run(&["rm", "-f", "late"]).assert_ok();
}

#[test]
fn connect_and_disconnect_refuse_what_cannot_be_done_naming_the_field() {
    let c = Ctr::new();
    c.run(&["network", "create", "--subnet", "10.89.42.0/24", "n1"])
        .assert_ok();
    run_d(&c, "a", "n1", "exec sleep 1000");
    c.run(&[
        "run",
        "-d",
        "--name",
        "iso",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ])
    .assert_ok();
    // Positive control: `a` can join the default network.
    c.run(&["network", "connect", "bridge", "a"]).assert_ok();
    c.run(&["network", "connect", "bridge", "a"])
        .assert_refused_naming("already connected");
    for mode in ["host", "none", "container:a"] {
        c.run(&["network", "connect", mode, "a"])
            .assert_refused_naming("network:");
        c.run(&["network", "disconnect", mode, "a"])
            .assert_refused_naming("network:");
    }
    c.run(&["network", "connect", "n1", "iso"])
        .assert_refused_naming("container: iso");
    c.run(&["network", "connect", "nosuch", "iso"])
        .assert_refused();
    c.run(&["network", "create", "--subnet", "10.89.43.0/24", "n2"])
        .assert_ok();
    let a_ip = ip_on(&c, "a", "n1").unwrap();
    run_d(&c, "b", "n2", "exec sleep 1000");
    c.run(&["network", "connect", "--ip", "10.89.99.5", "n1", "b"])
        .assert_refused_naming("ip:");
    c.run(&["network", "connect", "--ip", "10.89.42.1", "n1", "b"])
        .assert_refused_naming("gateway");
    c.run(&["network", "connect", "--ip", &a_ip, "n1", "b"])
        .assert_refused_naming("container a");
    c.run(&["network", "connect", "--alias", "bad_alias", "n1", "b"])
        .assert_refused_naming("aliases[0]");
    c.run(&["network", "disconnect", "n1", "b"])
        .assert_refused_naming("not connected");
    // Nothing was half-done: b is still only on n2, with one interface.
    let v = c.inspect("b");
    assert_eq!(v["networks"].as_object().unwrap().len(), 1, "{v}");
    let o = sh(&c, "b", "ip -o link | grep -c eth");
    assert_eq!(o.stdout.trim(), "1", "{o:?}");
    for n in ["a", "b", "iso"] {
        c.run(&["rm", "-f", n]).assert_ok();
    }
}

#[test]
fn container_mode_shares_the_other_containers_namespace_hostname_and_hosts() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "--hostname",
        "web.local",
        "--network",
        "bridge",
        "busybox",
        "sh",
        "-c",
        SERVE,
    ])
    .assert_ok();
    let ip = ip_on(&c, "web", "bridge").unwrap();
    // The joiner sees web's interface and address, serves web's loopback, and has its
    // hostname and hosts file.
    let script = "ip -o -4 addr show eth0; hostname; \
                  i=0; until wget -q -O - http://127.0.0.1:8080/; do i=$((i+1)); \
                  [ $i -gt 50 ] && exit 9; sleep 0.2; done; cat /etc/hosts";
    let o = c.run(&[
        "run",
        "--rm",
        "--name",
        "joiner",
        "--network",
        "container:web",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    o.assert_ok();
    assert!(o.stdout.contains(&format!("inet {ip}/")), "{o:?}");
    assert!(o.stdout.contains("\nweb.local\n"), "{o:?}");
    assert!(o.stdout.contains("served-by-web"), "{o:?}");
    assert!(o.stdout.contains(&format!("{ip}\tweb.local")), "{o:?}");
    // The same namespace: the joiner's interfaces are web's, link for link.
    let mine = c.run(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "sh",
        "-c",
        "cat /sys/class/net/eth0/address; readlink /proc/self/ns/net",
    ]);
    mine.assert_ok();
    let webs = sh(
        &c,
        "web",
        "cat /sys/class/net/eth0/address; readlink /proc/self/ns/net",
    );
    assert_eq!(mine.stdout, webs.stdout);

    // Errors name the field: no such container, a stopped one, a conflicting flag.
    c.run(&[
        "run",
        "--rm",
        "--network",
        "container:nosuch",
        "busybox",
        "true",
    ])
    .assert_refused_naming("network:");
    c.run(&["create", "--name", "idle", "busybox", "true"])
        .assert_ok();
    let o = c.run(&[
        "run",
        "--rm",
        "--network",
        "container:idle",
        "busybox",
        "true",
    ]);
    o.assert_refused_naming("network:")
        .assert_stderr_mentions("not running");
    c.run(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "--hostname",
        "x",
        "busybox",
        "true",
    ])
    .assert_refused_naming("hostname");
    c.run(&["network", "connect", "bridge", "idle"])
        .assert_refused_naming("already");
    for n in ["web", "idle"] {
        c.run(&["rm", "-f", n]).assert_ok();
    }
}

#[test]
fn a_connect_racing_the_containers_start_still_plugs_it() {
    use std::process::Stdio;
    let c = Ctr::new();
    c.run(&["network", "create", "--subnet", "10.89.44.0/24", "side"])
        .assert_ok();
    for i in 0..5 {
        let name = format!("racer{i}");
        c.run(&["create", "--name", &name, "busybox", "sleep", "1000"])
            .assert_ok();
        // The start and the connect at once: whichever lists the networks first, the
        // running container ends up with its address on `side`.
        let mut start = c.cmd(&["start", &name]);
        let mut start = own_group(&mut start)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let o = c.run(&["network", "connect", "side", &name]);
        o.assert_ok();
        let st = wait_child(&mut start, Duration::from_secs(120)).expect("start hung");
        assert!(st.success(), "start of {name} failed");
        let ip = ip_on(&c, &name, "side").unwrap();
        let o = sh(&c, &name, "ip -o -4 addr");
        assert!(
            o.stdout.contains(&format!("inet {ip}/")),
            "round {i}: {o:?}"
        );
        // Exactly one interface with it.
        assert_eq!(o.stdout.matches(&format!("inet {ip}/")).count(), 1, "{o:?}");
    }
}
