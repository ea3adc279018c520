//! Golden-file tests: `validate`, `diff` and `import-openapi` output compared with files under
//! `tests/golden/`. Run with `UPDATE_GOLDEN=1` to rewrite the files after an intended change
//! (then review the diff).

use edgegate_cli::{run_with, Env, EXIT_DIFFERENT, EXIT_OK};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Runs the CLI in-process (cwd: the crate); returns (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(args, &mut out, &mut err, &Env::default());
    (
        code,
        String::from_utf8(out).expect("utf-8 stdout"),
        String::from_utf8(err).expect("utf-8 stderr"),
    )
}

/// One run as a golden text: the command line, exit code, stdout and stderr.
fn transcript(args: &[&str]) -> String {
    let (code, out, err) = cli(args);
    format!(
        "$ edgegate {}\nexit {code}\n--- stdout\n{out}--- stderr\n{err}",
        args.join(" ")
    )
}

/// Compares `actual` with the golden file (or writes it under `UPDATE_GOLDEN`).
fn golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no {ext} files in {dir}");
    out
}

#[test]
fn validate_goldens() {
    for input in files("tests/golden/validate", "json") {
        let path = input.to_str().expect("utf-8 path");
        let mut args = vec!["validate", path];
        if path.ends_with(".spin.json") {
            args.extend(["--platform", "spin"]);
        }
        let mut text = transcript(&args);
        args.push("--json");
        text.push_str(&transcript(&args));
        golden(&input.with_extension("out"), &text);
    }
}

#[test]
fn validate_exit_codes() {
    for (file, platform, want) in [
        ("valid-demo.json", "workers", 0),
        ("mtls-workers.json", "workers", 0),
        ("mtls.spin.json", "spin", 2),
        ("invalid-many.json", "workers", 2),
        ("structural.json", "spin", 2),
        ("truncated.json", "workers", 2),
        ("missing-file.json", "workers", 1),
    ] {
        let path = format!("tests/golden/validate/{file}");
        let (code, _, _) = cli(&["validate", &path, "--platform", platform]);
        assert_eq!(code, want, "{file} on {platform}");
    }
}

#[test]
fn diff_goldens() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir("tests/golden/diff")
        .expect("diff dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 2);
    for case in cases {
        let a = case.join("a.json");
        let b = case.join("b.json");
        let (a, b) = (a.to_str().expect("path"), b.to_str().expect("path"));
        golden(&case.join("expected.txt"), &transcript(&["diff", a, b]));
        let (code, json, err) = cli(&["diff", a, b, "--json"]);
        assert_eq!((code, err.as_str()), (EXIT_OK, ""));
        golden(&case.join("expected.json"), &json);
        // The reverse direction swaps added and removed.
        let (_, back, _) = cli(&["diff", b, a, "--json"]);
        let (fwd, back): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&json).expect("json"),
            serde_json::from_str(&back).expect("json"),
        );
        for kind in ["apis", "routes", "policies", "pools", "identity_providers"] {
            assert_eq!(fwd[kind]["added"], back[kind]["removed"], "{kind}");
            assert_eq!(fwd[kind]["removed"], back[kind]["added"], "{kind}");
        }
        let differ = fwd.as_object().expect("object").values().any(|s| {
            ["added", "removed", "changed"]
                .iter()
                .any(|k| s[k].as_array().is_some_and(|l| !l.is_empty()))
        });
        let (code, _, _) = cli(&["diff", a, b, "--exit-code"]);
        assert_eq!(code, if differ { EXIT_DIFFERENT } else { EXIT_OK });
    }
}

#[test]
fn diff_refuses_what_is_not_a_config() {
    let (code, out, err) = cli(&[
        "diff",
        "tests/golden/validate/structural.json",
        "tests/golden/validate/valid-demo.json",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert!(
        err.lines()
            .all(|l| l.starts_with("tests/golden/validate/structural.json:$")),
        "{err}"
    );
}

#[test]
fn import_openapi_goldens() {
    for (spec, extra) in [
        (
            "tests/fixtures/openapi/petstore.yaml",
            &["--backend", "https://petstore3.swagger.io/api/v3"][..],
        ),
        ("tests/fixtures/openapi/orders-multi-server.json", &[][..]),
    ] {
        let mut args = vec!["import-openapi", spec];
        args.extend(extra);
        let (code, config, warnings) = cli(&args);
        assert_eq!(code, EXIT_OK, "{spec}: {warnings}");
        let stem = Path::new(spec)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("stem");
        golden(
            &Path::new("tests/golden/openapi").join(format!("{stem}.config.json")),
            &config,
        );
        golden(
            &Path::new("tests/golden/openapi").join(format!("{stem}.warnings.txt")),
            &warnings,
        );
        // What it wrote is a config the gateway activates.
        let compiled = edgegate_core::config::compile(&config, "test")
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert!(!compiled.routes().is_empty());
    }
}

#[test]
fn import_openapi_refuses_what_it_cannot_serve_and_writes_out_files() {
    // The petstore's only server is relative: no backend without --backend.
    let (code, out, err) = cli(&["import-openapi", "tests/fixtures/openapi/petstore.yaml"]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("--backend"), "{err}");
    assert!(
        err.contains("#/servers/0: `/api/v3` is not an absolute"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("edgegate-cli-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let spec = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_string()
    };
    let swagger = spec(
        "swagger.yaml",
        "swagger: '2.0'\ninfo: {title: x, version: '1'}\n",
    );
    let (code, _, err) = cli(&["import-openapi", &swagger]);
    assert_eq!(code, 2);
    assert!(err.contains("Swagger 2.0"), "{err}");
    let broken = spec("broken.yaml", "openapi: 3.0.0\npaths: [\n");
    let (code, _, err) = cli(&["import-openapi", &broken]);
    assert_eq!(code, 2);
    assert!(err.starts_with("$: not YAML"), "{err}");

    // A policy extension the gateway refuses: the compiler's error, pointing at the operation.
    let bad = spec(
        "bad.json",
        r#"{"openapi": "3.0.3", "info": {"title": "T", "version": "1"},
            "servers": [{"url": "https://t.example"}],
            "paths": {"/x": {"get": {"operationId": "getX", "x-edgegate-rate-limits": [
              {"name": "r", "key": "nobody", "algorithm": "token_bucket", "limit": 1, "window_s": 1}]}}}}"#,
    );
    let out_file = dir.join("out.json");
    let out_path = out_file.to_str().expect("utf-8");
    let (code, _, err) = cli(&["import-openapi", &bad, "--out", out_path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("$.apis[0].routes[0].policies.rate_limits[0]"),
        "{err}"
    );
    assert!(err.contains("(from #/paths/~1x/get)"), "{err}");
    assert!(!out_file.exists(), "nothing written");

    let (code, out, err) = cli(&[
        "import-openapi",
        "tests/fixtures/openapi/orders-multi-server.json",
        "--out",
        out_path,
        "--name",
        "shop-orders",
        "--base-path",
        "/shop",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10 routes"), "{out}");
    let written = std::fs::read_to_string(&out_file).expect("written");
    let (code, out, _) = cli(&["validate", out_path]);
    assert_eq!(code, 0, "{out}");
    let config: serde_json::Value = serde_json::from_str(&written).expect("json");
    assert_eq!(config["apis"][0]["name"], "shop-orders");
    assert_eq!(config["apis"][0]["base_path"], "/shop");
    // mTLS is in it: Spin refuses it, naming the route.
    let (code, _, err) = cli(&["validate", out_path, "--platform", "spin"]);
    assert_eq!(code, 2);
    assert!(err.contains("`mtls` is not available"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
