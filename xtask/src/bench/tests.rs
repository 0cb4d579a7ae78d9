//! Unit tests of the benchmark (one module for all of `bench/`: they share the sample log and samples).

use std::path::PathBuf;
use std::time::Duration;

use super::plot::tick_label;
use super::run::spec_of;
use super::*;

fn cfg(backend: Backend, cpus: u32, mode: ApStart) -> Config {
    Config {
        backend,
        engine: if backend == Backend::Qemu {
            Engine::TcgMulti
        } else {
            Engine::Bochs
        },
        mode,
        cpus,
    }
}

const LOG: &str = "\
[    0.013857] cpu0  INFO  boot: loader=pvh cmdline=\"vmx=off on_done=exit\"\r
[    0.020000] cpu0  INFO  smp: starting 3 APs mode=parallel trampoline=0x9e000 init_delay_us=10000 sipi_delay_us=200 ap_timeout_us=100000\r
[    0.040000] cpu0  INFO  smp: timing aps=3 sipi_to_pcb_us min=410 median=505 max=900 sipi_to_vmx_us min=- median=- max=-\r
[    0.040100] cpu0  DEBUG smp: timing cpu=1 apic_id=1 sipi_to_pcb_us=410 sipi_to_vmx_us=-\r
[    0.041000] cpu0  INFO  memory: footprint image_bytes=3728816 per_cpu_bytes=102400 stack_bytes=65536 ist_bytes=24576 pcb_bytes=4096 vmx_region_bytes=8192 allocated_bytes=409600\r
[    0.041500] cpu0  INFO  hypervisor: phases entry_us=0 acpi_us=19000 first_sipi_us=30500 online_us=39000 vmx_us=- summary_us=41900\r
[    0.041900] cpu0  INFO  hypervisor: summary: cpus=4 online=4 failed=0 vmx_root=0 verdict=ok boot_us=41950 reason=none t_acpi_us=19001 t_first_sipi_us=30501 t_online_us=39001\r
";

fn timed(log: &str, step_ms: u64) -> Vec<Timed> {
    log.lines()
        .enumerate()
        .map(|(i, l)| Timed {
            at: Duration::from_millis(100 + step_ms * i as u64),
            line: l.to_string(),
        })
        .collect()
}

#[test]
fn guest_report_reads_every_line_kind() {
    let r = GuestReport::from_lines(LOG.lines());
    assert_eq!(r.verdict.as_deref(), Some("ok"));
    assert_eq!(r.reason.as_deref(), Some("none"));
    assert_eq!(
        (r.cpus, r.online, r.failed, r.vmx_root),
        (Some(4), Some(4), Some(0), Some(0))
    );
    // The summary's values win over the phases line.
    assert_eq!(r.t_acpi_us, Some(19001));
    assert_eq!(r.t_first_sipi_us, Some(30501));
    assert_eq!(r.t_online_us, Some(39001));
    assert_eq!(r.t_vmx_us, None);
    assert_eq!(r.boot_us, Some(41950));
    assert_eq!(r.bringup_us(), Some(20000));
    assert_eq!(r.aps, Some(3));
    assert_eq!(
        r.sipi_to_pcb_us,
        Some(Spread {
            min: 410,
            median: 505,
            max: 900
        })
    );
    assert_eq!(r.sipi_to_vmx_us, None);
    assert_eq!(r.footprint_value("image_bytes"), Some(3728816));
    assert_eq!(r.footprint_value("allocated_bytes"), Some(409600));
    assert_eq!(r.footprint.len(), 7);
    assert_eq!(r.first_line_us, Some(13857));
    // Every kernel line (the DEBUG one too), its bytes with the `\r\n` as sent.
    let sent: usize = LOG
        .lines()
        .map(|l| l.trim_end_matches('\r').len() + 2)
        .sum();
    assert_eq!(r.log_lines, Some(7));
    assert_eq!(r.log_bytes, Some(sent as u64));
    assert_eq!(GuestReport::from_lines(["noise"]).log_lines, None);
}

#[test]
fn phases_line_fills_in_when_the_summary_lacks_keys() {
    let log = "\
[    0.041500] cpu0  INFO  hypervisor: phases entry_us=0 acpi_us=19000 first_sipi_us=30500 online_us=39000 vmx_us=52000 summary_us=60000\r
[    0.060000] cpu0  INFO  hypervisor: summary: cpus=4 online=4 failed=0 vmx_root=4 verdict=ok boot_us=60001 reason=none\r
[    0.070000] cpu0  INFO  hypervisor: summary: verdict=fail boot_us=1\r
";
    let r = GuestReport::from_lines(log.lines());
    assert_eq!(r.t_acpi_us, Some(19000));
    assert_eq!(r.t_vmx_us, Some(52000));
    assert_eq!(r.boot_us, Some(60001));
    assert_eq!(r.verdict.as_deref(), Some("ok"));
    assert_eq!(r.sipi_to_pcb_us, None);
    assert!(r.footprint.is_empty());
}

#[test]
fn sample_from_timed_lines() {
    let c = cfg(Backend::Qemu, 4, ApStart::Parallel);
    let s = Sample::from_timed(c, 1, &timed(LOG, 10), false, Duration::from_millis(250));
    assert_eq!(s.status, RunStatus::Ok);
    assert_eq!(s.wall_first_line, Some(Duration::from_millis(100)));
    assert_eq!(s.wall_summary, Some(Duration::from_millis(160)));
    assert_eq!(s.wall_exit, Duration::from_millis(250));
    assert!(s.detail.is_empty());
    assert!(
        s.progress()
            .starts_with("ok online=4/4 guest online=39.0 ms"),
        "{}",
        s.progress()
    );

    let degraded = LOG
        .replace("verdict=ok", "verdict=degraded")
        .replace("reason=none", "reason=ap_timeout");
    let s = Sample::from_timed(c, 2, &timed(&degraded, 10), false, Duration::ZERO);
    assert_eq!(s.status, RunStatus::Degraded);
    assert!(s.detail.contains("reason=ap_timeout"), "{}", s.detail);

    let cut: String = LOG.lines().take(3).map(|l| format!("{l}\n")).collect();
    let s = Sample::from_timed(c, 3, &timed(&cut, 10), true, Duration::ZERO);
    assert_eq!(s.status, RunStatus::Timeout);
    assert_eq!(s.wall_summary, None);
    let s = Sample::from_timed(c, 3, &timed(&cut, 10), false, Duration::ZERO);
    assert_eq!(s.status, RunStatus::NoSummary);
    let s = Sample::from_timed(c, 3, &[], false, Duration::ZERO);
    assert_eq!(s.status, RunStatus::NoSummary);
    assert_eq!(s.wall_first_line, None);
    // A triple fault the emulator reported, without a summary line.
    let s = Sample::from_ending(c, 3, &timed(&cut, 10), false, true, Duration::ZERO);
    assert_eq!(s.status, RunStatus::TripleFault);
    assert!(s.detail.starts_with("status=triple_fault "), "{}", s.detail);
    // A timeout wins over a triple fault; a summary line wins over both.
    let s = Sample::from_ending(c, 3, &timed(&cut, 10), true, true, Duration::ZERO);
    assert_eq!(s.status, RunStatus::Timeout);
    let s = Sample::from_ending(c, 1, &timed(LOG, 10), false, true, Duration::ZERO);
    assert_eq!(s.status, RunStatus::Ok);
    let bogus = LOG.replace("verdict=ok", "verdict=maybe");
    let s = Sample::from_timed(c, 1, &timed(&bogus, 1), false, Duration::ZERO);
    assert_eq!(s.status, RunStatus::Fail);
}

#[test]
fn statistics() {
    assert_eq!(stats(&[]), None);
    assert_eq!(
        stats(&[3.0]),
        Some(Stats {
            n: 1,
            min: 3.0,
            median: 3.0,
            max: 3.0
        })
    );
    assert_eq!(
        stats(&[5.0, 1.0, 3.0]),
        Some(Stats {
            n: 3,
            min: 1.0,
            median: 3.0,
            max: 5.0
        })
    );
    let s = stats(&[4.0, 1.0, 2.0, 10.0]).unwrap();
    assert_eq!((s.n, s.min, s.median, s.max), (4, 1.0, 3.0, 10.0));
    let s = stats(&[f64::NAN, 2.0]).unwrap();
    assert_eq!((s.n, s.median), (1, 2.0));
}

fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    for (cpus, online_ms, wall_ms) in [(2u32, 20u64, 300u64), (64, 45, 1400)] {
        for run in 1..=3u32 {
            let c = cfg(Backend::Qemu, cpus, ApStart::Parallel);
            let log = LOG.replace(
                "t_online_us=39001",
                &format!("t_online_us={}", online_ms * 1000 + u64::from(run)),
            );
            let mut lines = timed(&log, 1);
            lines.last_mut().unwrap().at = Duration::from_millis(wall_ms + u64::from(run));
            out.push(Sample::from_timed(
                c,
                run,
                &lines,
                false,
                Duration::from_secs(2),
            ));
        }
    }
    let c = cfg(Backend::Bochs, 15, ApStart::Serial);
    out.push(Sample::error(c, 1, "bochs: not found".into()));
    out
}

#[test]
fn aggregation_and_targets() {
    let aggs = aggregate(&samples());
    assert_eq!(aggs.len(), 3);
    let a = &aggs[0];
    assert_eq!((a.config.cpus, a.runs, a.ok), (2, 3, 3));
    let online = a.get("t_online").unwrap();
    assert_eq!(
        (online.min, online.median, online.max),
        (20.001, 20.002, 20.003)
    );
    let wall = aggs[1].get("wall_summary").unwrap();
    assert!((wall.median - 1.402).abs() < 1e-9, "{wall:?}");
    assert_eq!(aggs[2].ok, 0);
    assert_eq!(aggs[2].get("t_online"), None);
    assert_eq!(aggs[0].footprint.len(), 7);

    let t = check_targets(&aggs);
    assert_eq!(t[0].met, Some(true)); // 45 ms < 50 ms
    assert_eq!(t[1].met, Some(true)); // 1.402 s < 1.5 s
    assert_eq!(t[2].met, None); // 255 not measured
    assert_eq!(t[3].met, None); // Bochs 15 serial only
                                // bring-up = t_online - t_acpi: (45.002 - 19.001) / (20.002 - 19.001)
    let r = t[4].value.unwrap();
    assert!((r - 26.001 / 1.001).abs() < 1e-6, "{r}");
    assert_eq!(t[4].met, Some(false));
    assert_eq!(t[5].met, Some(true));
    let text = targets_text(&t);
    assert!(text.contains("MET ") && text.contains("MISSED") && text.contains("not measured"));
}

#[test]
fn csv_output() {
    assert_eq!(csv_field("a"), "a");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    let s = samples();
    let runs = runs_csv(&s);
    let lines: Vec<&str> = runs.lines().collect();
    assert_eq!(lines.len(), 1 + s.len());
    let cols = lines[0].split(',').count();
    assert!(lines.iter().all(|l| l.split(',').count() == cols), "{runs}");
    assert!(lines[1].starts_with("qemu,tcg,parallel,2,1,ok,ok,none,4,0,0,19001,30501,20001,,41950,1000,410,505,900,,,,0.1,0.301,2,"), "{}", lines[1]);
    assert!(
        lines[1].ends_with(",3728816,102400,65536,24576,4096,8192,409600"),
        "{}",
        lines[1]
    );
    assert!(lines
        .last()
        .unwrap()
        .starts_with("bochs,bochs,serial,15,1,error,"));

    let aggs = aggregate(&s);
    let sum = summary_csv(&aggs);
    let lines: Vec<&str> = sum.lines().collect();
    assert_eq!(lines.len(), 4);
    let cols = lines[0].split(',').count();
    assert_eq!(cols, 6 + 3 * METRICS.len() + FOOTPRINT_KEYS.len());
    assert!(lines.iter().all(|l| l.split(',').count() == cols));
    assert!(lines[0].contains("t_online_min_ms,t_online_median_ms,t_online_max_ms"));
    assert!(
        lines[1].starts_with("qemu,tcg,parallel,2,3,3,19.001,19.001,19.001,"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(",20.001,20.002,20.003,"), "{}", lines[1]);
}

/// A JSON syntax check (serde_json's parser).
fn json_valid(s: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(s).is_ok()
}

#[test]
fn json_output() {
    assert!(json_valid(
        r#"{"a": [1, 2.5, "x\"y", null, true], "b": {}}"#
    ));
    assert!(!json_valid(r#"{"a": [1, 2,]}"#));
    assert!(!json_valid(r#"{"a" 1}"#));
    let j = Json::Obj(vec![
        (
            "s".into(),
            Json::str("quote \" backslash \\ newline \n tab \t bell \u{7}"),
        ),
        ("n".into(), Json::Num(1.5)),
        ("inf".into(), Json::Num(f64::INFINITY)),
        ("e".into(), Json::Arr(vec![])),
    ]);
    let text = j.render();
    assert!(json_valid(&text), "{text}");
    assert!(
        text.contains(r#""quote \" backslash \\ newline \n tab \t bell \u0007""#),
        "{text}"
    );
    assert!(text.contains(r#""inf": null"#));

    let s = samples();
    let aggs = aggregate(&s);
    let t = check_targets(&aggs);
    let meta = vec![("host_cpus".to_string(), Json::Int(2))];
    let text = to_json(&meta, &s, &aggs, &t).render();
    assert!(json_valid(&text), "{text}");
    for needle in [
        r#""meta""#,
        r#""configs""#,
        r#""runs""#,
        r#""targets""#,
        r#""t_online_ms": {"#,
        r#""wall_summary_s": 1.401"#,
        r#""detail": "bochs: not found""#,
        r#""image_bytes": 3728816"#,
    ] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
}

#[test]
fn tables() {
    let aggs = aggregate(&samples());
    let t = table(&aggs);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2 + aggs.len());
    assert!(lines[0].starts_with("backend  accel"), "{t}");
    assert!(lines[2].contains("20.0 (20.0-20.0)"), "{t}");
    assert!(lines[4].contains("0/1"), "{t}");
    let md = markdown_table(&aggs);
    assert_eq!(md.lines().count(), 2 + aggs.len());
    assert!(md.lines().all(|l| l.starts_with('|') && l.ends_with('|')));
    let fp = footprint_table(&aggs);
    assert!(fp.contains("qemu cpus=2: image_bytes=3728816"), "{fp}");
}

/// Tags open and close in order (a light well-formedness check for the SVG).
fn xml_balanced(s: &str) -> bool {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = match rest.find('>') {
            Some(e) => e,
            None => return false,
        };
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            if stack.pop().as_deref() != Some(name.trim()) {
                return false;
            }
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
        }
    }
    stack.is_empty()
}

#[test]
fn svg_output() {
    assert_eq!(
        log_ticks(0.03, 7.0),
        vec![0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
    );
    assert_eq!(log_ticks(10.0, 10.0), vec![10.0]);
    assert!(log_ticks(0.0, 1.0).is_empty());
    assert_eq!(tick_label(0.05), "0.05");
    assert_eq!(tick_label(200.0), "200");

    let mut s = samples();
    for mut x in samples() {
        x.config.mode = ApStart::Serial;
        s.push(x);
    }
    let aggs = aggregate(&s);
    let ser = series(&aggs, "t_online", false);
    assert_eq!(ser.len(), 2, "{ser:?}");
    assert!(ser.iter().any(|x| x.dashed && x.label == "QEMU serial"));
    assert_eq!(
        ser[0].points.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![2, 64]
    );
    let svg = bench_svg(&aggs, false, "sub & title <test>");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(xml_balanced(&svg), "{svg}");
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    assert!(svg.contains("sub &amp; title &lt;test&gt;"));
    assert_eq!(svg.matches("<polyline").count(), 4); // 2 series x 2 panels
    assert!(svg.contains("stroke-dasharray"));
    assert!(svg.contains("50 ms @ 64") && svg.contains("1.5 s @ 64"));
    // 255 is outside the measured range: no mark.
    assert!(!svg.contains("5 s @ 255"));
    // Every coordinate is inside the canvas.
    for cap in svg.split("cx=\"").skip(1) {
        let v: f64 = cap.split('"').next().unwrap().parse().unwrap();
        assert!((0.0..=940.0).contains(&v), "{v}");
    }
    let empty = bench_svg(&[], false, "");
    assert!(xml_balanced(&empty) && empty.contains("no data"));
}

#[test]
fn argument_parsing() {
    let s = parse_args(Vec::<String>::new()).unwrap();
    assert_eq!(s.backends, vec![Backend::Qemu, Backend::Bochs]);
    assert_eq!(s.cpus, None);
    assert_eq!(s.runs, 3);
    assert_eq!(s.modes, vec![ApStart::Parallel, ApStart::Serial]);
    assert_eq!(s.tcg, TcgPolicy::Auto);
    assert!(s.out.ends_with("target/bench"));

    let s = parse_args([
        "--backend",
        "qemu",
        "--cpus",
        "64, 2,2",
        "--runs=5",
        "--mode",
        "serial",
        "--out",
        "docs/perf",
        "--tcg",
        "both",
        "--append",
        "init_delay_us=1000",
        "--append",
        "log=debug",
        "--timeout",
        "30",
        "--memory=256",
        "--replot",
        "--",
        "-vga",
        "none",
    ])
    .unwrap();
    assert_eq!(s.backends, vec![Backend::Qemu]);
    assert_eq!(s.cpus, Some(vec![2, 64]));
    assert_eq!(s.runs, 5);
    assert_eq!(s.modes, vec![ApStart::Serial]);
    assert_eq!(s.out, PathBuf::from("docs/perf"));
    assert_eq!(s.tcg, TcgPolicy::Both);
    assert_eq!(s.append, "init_delay_us=1000 log=debug");
    assert_eq!(s.timeout, Duration::from_secs(30));
    assert_eq!(s.memory_mib, 256);
    assert_eq!(s.extra_args, vec!["-vga", "none"]);
    assert!(s.replot);

    for bad in [
        &["--backend", "kvm"][..],
        &["--cpus", "1,x"],
        &["--cpus", "0"],
        &["--cpus"],
        &["--runs", "0"],
        &["--mode", "random"],
        &["--tcg", "many"],
        &["--timeout", "0"],
        &["--out", ""],
        &["--frob"],
        &["stray"],
        &["--backend", "bochs", "--cpus", "16"],
        &["--append", "ap_start=serial"],
        &["--append", "on_done=halt"],
        &["--", "-x"],
    ] {
        assert!(parse_args(bad.iter().copied()).is_err(), "{bad:?}");
    }
    assert!(parse_args(["--backend", "all", "--cpus", "16"]).is_ok());
}

#[test]
fn planning() {
    let (c, notes) = plan(&BenchSpec::default());
    assert!(notes.is_empty());
    assert_eq!(c.len(), (QEMU_CPUS.len() + BOCHS_CPUS.len()) * 2);
    assert!(c.iter().all(|c| match c.backend {
        Backend::Qemu => (c.cpus > TCG_SINGLE_ABOVE) == (c.engine == Engine::TcgSingle),
        Backend::Bochs => c.engine == Engine::Bochs && c.cpus <= 15,
        Backend::Auto | Backend::Kvm => false,
    }));
    // The backend and the engine agree.
    assert!(c.iter().all(|c| c.engine.backend() == c.backend));
    // Parallel and serial of one count are next to each other.
    assert_eq!(
        (c[0].cpus, c[0].mode, c[1].cpus, c[1].mode),
        (1, ApStart::Parallel, 1, ApStart::Serial)
    );
    let spec = BenchSpec {
        cpus: Some(vec![2, 32]),
        tcg: TcgPolicy::Both,
        modes: vec![ApStart::Parallel],
        ..BenchSpec::default()
    };
    let (c, notes) = plan(&spec);
    assert_eq!(notes.len(), 1, "{notes:?}");
    // qemu 2 and 32 twice each (multi, single), bochs 2.
    assert_eq!(c.len(), 5);

    let q = cfg(Backend::Qemu, 8, ApStart::Serial);
    assert_eq!(
        bench_append(&q, " init_delay_us=1 "),
        "ap_start=serial vmx=off init_delay_us=1"
    );
    let b = cfg(Backend::Bochs, 8, ApStart::Parallel);
    assert_eq!(bench_append(&b, ""), "ap_start=parallel");
}

#[test]
fn runs_csv_round_trip() {
    assert_eq!(
        split_csv_line("a,\"b,c\",\"d \"\"e\"\"\",,f"),
        vec!["a", "b,c", "d \"e\"", "", "f"]
    );
    let s = samples();
    let text = runs_csv(&s);
    let back = parse_runs_csv(&text).unwrap();
    assert_eq!(back.len(), s.len());
    assert_eq!(runs_csv(&back), text);
    assert_eq!(summary_csv(&aggregate(&back)), summary_csv(&aggregate(&s)));
    let spec = spec_of(&back);
    assert_eq!(spec.backends, vec![Backend::Qemu, Backend::Bochs]);
    assert_eq!((spec.runs, spec.tcg), (3, TcgPolicy::Multi));
    assert!(parse_runs_csv("").is_err());
    assert!(parse_runs_csv(&text.replace("qemu,tcg,", "qemu,kvm,")).is_err());
}

#[test]
fn subtitle() {
    let t = plot_subtitle(
        &BenchSpec::default(),
        "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)",
        "2.7+dfsg-4+deb12u1",
        2,
    );
    assert_eq!(
        t,
        "QEMU 7.2.22 TCG (vmx=off, thread=single above 8 CPUs) and Bochs 2.7 (VMX on); 3 runs each; 2 host CPUs"
    );
}

#[test]
fn cli_dispatch() {
    use crate::cli::{parse_args as cli, Cli};
    match cli(["bench", "--runs", "2", "--backend", "qemu"]).unwrap() {
        Cli::Bench(s) => assert_eq!((s.runs, s.backends.len()), (2, 1)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(cli(["bench", "--help"]), Ok(Cli::BenchHelp)));
    assert!(matches!(
        cli(["bench", "--runs", "2", "-h"]),
        Ok(Cli::BenchHelp)
    ));
    // After `--` it is an emulator argument.
    match cli(["bench", "--backend", "qemu", "--", "--help"]).unwrap() {
        Cli::Bench(s) => assert_eq!(s.extra_args, vec!["--help"]),
        other => panic!("{other:?}"),
    }
    let e = cli(["bench", "--runs", "x"]).unwrap_err();
    assert!(e.contains("bench --help"), "{e}");
    // `bench` is a subcommand only in first position.
    assert!(cli(["--quiet", "bench"]).is_err());
}

#[test]
fn tcg_threading_rewrite() {
    let args: Vec<String> = ["-machine", "q35", "-accel", "tcg", "-m", "512"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(with_tcg_threading(&args, Engine::TcgMulti), args);
    let single = with_tcg_threading(&args, Engine::TcgSingle);
    assert_eq!(single[3], "tcg,thread=single");
    assert_eq!(single.len(), args.len());
    // Above 8 CPUs the runner's own default is single-threaded: a multi-threaded configuration undoes it.
    assert_eq!(with_tcg_threading(&single, Engine::TcgMulti), args);
    assert_eq!(with_tcg_threading(&single, Engine::TcgSingle), single);
}
