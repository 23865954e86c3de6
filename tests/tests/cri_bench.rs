//! `make bench`: a pod through containerd's CRI plugin with the `codex` handler against
//! the node's `runc` handler, interleaved in one daemon (one run, same image, same CNI):
//! RunPodSandbox; CreateContainer + StartContainer; StopContainer + RemoveContainer;
//! StopPodSandbox + RemovePodSandbox. Ignored by `cargo test`; `bench/run.sh` runs it
//! with `CODEX_OCI` = the release binary and `CRI_BENCH_OUT=docs/benchmarks.md`.

mod cri {
    pub mod client;
    pub mod daemon;
    pub mod pod;
}

use std::time::Instant;

use codex_tests::*;
use cri::client::ok;
use cri::pod::*;
use k8s_cri::v1 as api;

const PHASES: [&str; 4] = [
    "RunPodSandbox",
    "CreateContainer + StartContainer",
    "StopContainer + RemoveContainer",
    "StopPodSandbox + RemovePodSandbox",
];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[test]
#[ignore = "a benchmark: bench/run.sh runs it"]
fn cri_bench_codex_against_runc() {
    if !ready("cri_bench_codex_against_runc") {
        return;
    }
    if !have_tool("runc") {
        skip("cri_bench_codex_against_runc: runc is not installed (apt-get install -y runc)");
        return;
    }
    let runs: usize = std::env::var("CRI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let ctx = TestCtx::new("cri-bench");
    let s = setup(&ctx);
    s.teardown_on_cleanup(&ctx);
    let handlers = [HANDLER, "runc"];
    let mut times = vec![vec![Vec::new(); PHASES.len()]; handlers.len()];
    for i in 0..runs {
        for (h, handler) in handlers.iter().enumerate() {
            let t = Instant::now();
            let (pod, config) = s.run_pod_with(&format!("bench-{handler}-{i}"), handler);
            times[h][0].push(ms(t));
            let t = Instant::now();
            let c = s.create_start(
                &pod,
                &config,
                container_config(&s.image, "c", "exec sleep 1000", None),
            );
            times[h][1].push(ms(t));
            let t = Instant::now();
            let id = c.clone();
            ok(
                "StopContainer",
                s.cri.rs("StopContainer", |mut cl| async move {
                    cl.stop_container(api::StopContainerRequest {
                        container_id: id,
                        timeout: 0,
                    })
                    .await
                }),
            );
            let id = c.clone();
            ok(
                "RemoveContainer",
                s.cri.rs("RemoveContainer", |mut cl| async move {
                    cl.remove_container(api::RemoveContainerRequest { container_id: id })
                        .await
                }),
            );
            times[h][2].push(ms(t));
            let t = Instant::now();
            s.remove_pod(&pod);
            times[h][3].push(ms(t));
        }
    }
    // positive control: the codex pods ran codex-oci
    let calls = read_lossy(&s.calls);
    assert!(
        calls.lines().filter(|l| l.contains(" create ")).count() >= 2 * runs,
        "{calls}"
    );
    let mut lines = vec![
        "| step (median ms) | codex-oci | runc | codex / runc |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    let mut totals = [0.0f64; 2];
    for (p, phase) in PHASES.iter().enumerate() {
        let c = median(&mut times[0][p]);
        let r = median(&mut times[1][p]);
        totals[0] += c;
        totals[1] += r;
        lines.push(format!("| {phase} | {c:.1} | {r:.1} | {:.2}x |", c / r));
    }
    lines.push(format!(
        "| sum of the medians | {:.1} | {:.1} | {:.2}x |",
        totals[0],
        totals[1],
        totals[0] / totals[1]
    ));
    let section = format!(
        "## Kubernetes CRI: a pod through containerd with codex-oci against runc\n\n\
         Measured by `make bench` (tests/tests/cri_bench.rs): containerd {}'s CRI plugin, one \
         daemon with two runtime handlers (`codex` = `{}` behind a logging wrapper, `runc` = \
         `{}`), {runs} interleaved rounds of a pod (bridge CNI, the \
         busybox fixture as pause and workload image) with one `sleep` container, timed at the \
         CRI client. The shim, CNI and snapshotter work are the same for both; the \
         difference is the runtime's calls (create, start, kill, delete), and codex's \
         also pay the wrapper's `sh` exec each. Medians of a shared 2-core machine: \
         differences under ~20% are within its noise.\n\n{}\n",
        containerd_version(),
        ctx.rt
            .bin
            .strip_prefix(workspace_dir())
            .unwrap_or(&ctx.rt.bin)
            .display(),
        host_sh("command -v runc").stdout.trim(),
        lines.join("\n")
    );
    println!("{section}");
    if let Ok(out) = std::env::var("CRI_BENCH_OUT") {
        let path = workspace_dir().join(out);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let text = match text.find("## Kubernetes CRI:") {
            Some(start) => {
                let end = text[start + 1..].find("\n## ").map(|e| start + 2 + e);
                format!(
                    "{}{section}{}",
                    &text[..start],
                    end.map_or("", |e| &text[e..])
                )
            }
            None => format!("{}\n\n{section}", text.trim_end()),
        };
        std::fs::write(&path, text).unwrap();
    }
}

fn containerd_version() -> String {
    let o = host_sh("containerd --version");
    o.stdout
        .split_whitespace()
        .nth(2)
        .unwrap_or("?")
        .to_string()
}
