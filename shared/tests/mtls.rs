//! Client-certificate (mTLS) authentication through the pipeline over the fake platform.

mod common;

use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead};
use edgegate_core::platform::ClientCertificate;
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};

const FP: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

fn config(accept: Value) -> Value {
    let accepts = |m: &str| accept.as_array().unwrap().iter().any(|a| a == m);
    let mut auth = json!({ "accept": accept });
    if accepts("introspection") {
        auth["introspection"] = json!({ "provider": "corp" });
    }
    if accepts("mtls") {
        auth["mtls"] = json!({ "certificates": [
            { "fingerprint_sha256": FP, "consumer": "billing-service" },
            { "subject_dn": "CN=reports,O=Example", "consumer": "reports-service" }
        ] });
    }
    json!({
        "identity_providers": { "corp": { "issuer": "https://idp.example", "introspection_endpoint": "https://idp.example/i" } },
        "gateway": { "identity_headers": { "issuer": "x-edgegate-issuer", "method": "x-edgegate-auth-method" } },
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{
            "name": "a", "base_path": "/a", "pool": "p",
            "policies": { "auth": auth },
            "routes": [{ "name": "r", "path": "/{*rest}" }]
        }]
    })
}

fn cert(fingerprint: &str, subject: &str) -> ClientCertificate {
    ClientCertificate {
        presented: true,
        verified: true,
        failure: None,
        revoked: false,
        fingerprint_sha256: fingerprint.to_string(),
        subject_dn: subject.to_string(),
        issuer_dn: "CN=Example CA".to_string(),
    }
}

fn call(gw: &Gateway, p: &FakePlatform, token: Option<&str>) -> GatewayResponse<FakeBody> {
    let mut headers = HeaderList::new();
    if let Some(t) = token {
        headers.append("authorization", format!("Bearer {t}"));
    }
    let head = RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: "/a/x".into(),
        query: None,
        headers,
        client_ip: None,
    };
    block_on(gw.handle(p, head, FakeBody::Empty))
}

#[test]
fn certificate_table() {
    let fp_lower = FP.replace(':', "").to_ascii_lowercase();
    let revoked = ClientCertificate {
        revoked: true,
        ..cert(&fp_lower, "CN=x")
    };
    let failed = ClientCertificate {
        verified: false,
        failure: Some("FAILED:certificate has expired".into()),
        ..cert(&fp_lower, "CN=x")
    };
    let absent = ClientCertificate {
        presented: false,
        ..ClientCertificate::default()
    };
    // (case, certificate the platform reports, status, code, consumer sent upstream)
    type Case<'a> = (
        &'a str,
        Option<ClientCertificate>,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "fingerprint, any case and separators",
            Some(cert(&fp_lower, "CN=other")),
            200,
            "",
            Some("billing-service"),
        ),
        (
            "subject DN",
            Some(cert("00", "CN=reports,O=Example")),
            200,
            "",
            Some("reports-service"),
        ),
        (
            "verified but not listed",
            Some(cert("11", "CN=stranger")),
            401,
            "unknown_certificate",
            None,
        ),
        (
            "not verified by the edge",
            Some(failed),
            401,
            "certificate_invalid",
            None,
        ),
        ("revoked", Some(revoked), 401, "certificate_invalid", None),
        (
            "no certificate",
            Some(absent),
            401,
            "missing_credentials",
            None,
        ),
        (
            "platform gave nothing",
            None,
            401,
            "missing_credentials",
            None,
        ),
    ];
    for (name, c, status, want_code, consumer) in cases {
        let p = common::platform_with(&config(json!(["mtls"])));
        p.set_client_certificate(c);
        let gw = common::gateway();
        let resp = call(&gw, &p, None);
        assert_eq!(
            (resp.status, common::problem_code(&resp).as_str()),
            (status, want_code),
            "{name}"
        );
        if let Some(consumer) = consumer {
            let sent = &p.sent()[0].0;
            assert_eq!(
                sent.headers.get("x-edgegate-subject"),
                Some(consumer),
                "{name}"
            );
            assert_eq!(
                sent.headers.get("x-edgegate-auth-method"),
                Some("mtls"),
                "{name}"
            );
            assert_eq!(
                sent.headers.get("x-edgegate-issuer"),
                Some("CN=Example CA"),
                "{name}"
            );
        } else {
            assert!(p.sent().is_empty(), "{name}");
            if want_code.starts_with("cert") || want_code == "unknown_certificate" {
                assert!(
                    resp.header("www-authenticate").is_none(),
                    "{name}: no bearer challenge"
                );
            }
        }
    }
}

#[test]
fn the_first_accepted_method_whose_credential_is_presented_decides() {
    let fp_lower = FP.replace(':', "").to_ascii_lowercase();
    // mtls listed first: a good certificate wins, the (unusable) token is not looked at.
    let p = common::platform_with(&config(json!(["mtls", "introspection"])));
    p.set_client_certificate(Some(cert(&fp_lower, "CN=x")));
    let gw = common::gateway();
    assert_eq!(call(&gw, &p, Some("opaque")).status, 200);
    assert!(p.http_sent().is_empty(), "no introspection");

    // The token listed first: it decides, and its failure is not covered by the certificate.
    let p = common::platform_with(&config(json!(["introspection", "mtls"])));
    p.set_client_certificate(Some(cert(&fp_lower, "CN=x")));
    p.on_http(|_, _| {
        Ok(edgegate_core::platform::HttpResponse {
            status: 200,
            headers: HeaderList::new(),
            body: br#"{"active":false}"#.to_vec(),
        })
    });
    let gw = common::gateway();
    let resp = call(&gw, &p, Some("opaque"));
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (401, "token_inactive")
    );
    // Without a token, the certificate is used.
    assert_eq!(call(&gw, &p, None).status, 200);

    // A bad certificate is never downgraded to anonymous.
    let p = common::platform_with(&config(json!(["anonymous", "mtls"])));
    p.set_client_certificate(Some(cert("11", "CN=stranger")));
    let gw = common::gateway();
    assert_eq!(
        common::problem_code(&call(&gw, &p, None)),
        "unknown_certificate"
    );
    p.set_client_certificate(None);
    assert_eq!(
        call(&gw, &p, None).status,
        200,
        "no credential at all: anonymous"
    );
}

#[test]
fn a_platform_without_client_certificates_refuses_mtls_config() {
    let p = common::platform_with(&config(json!(["mtls"])));
    p.set_supports_client_certificates(false);
    let gw = common::gateway();
    let resp = call(&gw, &p, None);
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (503, "no_config")
    );
    let logs = p.take_logs();
    let rejected = logs
        .iter()
        .find(|l| l.contains("\"config_rejected\""))
        .expect("a config_rejected event");
    assert!(
        rejected.contains("$.apis[0].policies.auth.accept"),
        "{rejected}"
    );
    assert!(
        rejected.contains("not available on this platform"),
        "{rejected}"
    );

    // The same platform serves a config without mtls.
    let p = common::platform_with(&config(json!(["introspection"])));
    p.set_supports_client_certificates(false);
    p.on_http(|_, _| {
        Ok(edgegate_core::platform::HttpResponse {
            status: 200,
            headers: HeaderList::new(),
            body: br#"{"active":true,"sub":"x"}"#.to_vec(),
        })
    });
    let gw = common::gateway();
    assert_eq!(call(&gw, &p, Some("opaque")).status, 200);
}

#[test]
fn mtls_config_errors_have_paths() {
    let mut doc = config(json!(["mtls"]));
    doc["apis"][0]["policies"]["auth"]["mtls"]["certificates"] = json!([
        { "fingerprint_sha256": "abc", "consumer": "x" },
        { "consumer": "y" },
        { "subject_dn": "CN=z", "fingerprint_sha256": FP, "consumer": "z" }
    ]);
    let (paths, errors) = common::config_errors(&doc);
    assert_eq!(
        paths,
        vec![
            "$.apis[0].policies.auth.mtls.certificates[0].fingerprint_sha256",
            "$.apis[0].policies.auth.mtls.certificates[1]",
            "$.apis[0].policies.auth.mtls.certificates[2]",
        ],
        "{errors:#?}"
    );
}
