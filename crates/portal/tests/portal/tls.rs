//! HTTPS on the public listener.

use crate::helpers::{Behaviour, StubHardware, portal_settings, seed_items, spawn_portal};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct CertFiles {
    dir: std::path::PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl CertFiles {
    fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("self-signed certificate");
        let dir = std::env::temp_dir().join(format!("portal-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("cert");
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).expect("key");
        Self {
            dir,
            der: certified.cert.der().clone(),
        }
    }

    fn args(&self) -> [String; 2] {
        [
            format!("--tls-cert-file={}", self.dir.join("cert.pem").display()),
            format!("--tls-key-file={}", self.dir.join("key.pem").display()),
        ]
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_portal_serves_https_with_hsts_when_given_a_certificate() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let certs = CertFiles::new();
    let args = certs.args();
    let portal = spawn_portal(&stub.url(), &[args[0].as_str(), args[1].as_str()]).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.der.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(portal.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response).to_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(
        response.contains("strict-transport-security: max-age=31536000"),
        "{response}"
    );
    assert!(response.contains("h16mr"));
    portal.stop.cancel();
}

#[tokio::test]
async fn an_unreadable_certificate_names_the_setting() {
    let settings = portal_settings(
        "http://127.0.0.1:9",
        &[
            "--tls-cert-file=/nonexistent/cert.pem",
            "--tls-key-file=/nonexistent/key.pem",
        ],
    );
    let err = portal::Application::build(&settings)
        .await
        .expect_err("must fail");
    assert!(format!("{err:#}").contains("TLS_CERT_FILE"), "{err:#}");
}
