//! TLS for the public listener, with rustls and PEM files.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsConfig, secret};

/// Build a rustls server config from PEM files, offering `h2` over ALPN when
/// HTTP/2 is on. The private key is a secret: a file other users can read is
/// refused unless `allow_world_readable` (as for every secret file).
pub fn server_config(
    tls: &TlsConfig,
    http2: bool,
    allow_world_readable: bool,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = load_certs(&tls.cert_file, "server.tls.cert_file")?;
    let pem = secret::read_secret_file("server.tls.key_file", &tls.key_file, allow_world_readable)?;
    let key = PrivateKeyDer::from_pem_slice(pem.expose().as_bytes())
        .with_context(|| format!("server.tls.key_file: no usable private key in {}", tls.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        // Asked for, not required: customers connect without one; what a
        // verified certificate opens is decided per request (CDN origins).
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in load_certs(path, "server.tls.client_ca_file")? {
                roots.add(ca).with_context(|| format!("server.tls.client_ca_file: a bad CA in {}", path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .context("server.tls.client_ca_file: cannot build the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("server.tls: the certificate and key do not form a usable pair")?;
    config.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(config))
}

fn load_certs(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{key}: bad PEM in {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{key}: no certificate in {}", path.display());
    }
    Ok(certs)
}
