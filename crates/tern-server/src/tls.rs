//! TLS set-up: loading the certificate and key, and generating a self-signed
//! pair for the embedded default configuration.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Generating a certificate failed.
    #[error("certificate generation: {0}")]
    Generate(String),
}

/// Installs ring as the process-wide crypto provider (once; later calls are
/// harmless). Must run before any rustls config is built.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a rustls server config from PEM files.
///
/// # Errors
/// [`TlsError`] when the files are unreadable or do not match.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_clients(cert, key, None)
}

/// Builds a rustls server config from PEM files; with `client_ca`, clients
/// may present a certificate signed by one of those CAs (none is required;
/// one that does not verify fails the handshake).
///
/// # Errors
/// [`TlsError`] when the files are unreadable or do not match.
pub fn server_config_with_clients(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    install_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            problem: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_owned(),
            problem: "no certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        path: key.to_owned(),
        problem: e.to_string(),
    })?;
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = roots_from_pem(ca).map_err(|problem| TlsError::Pem {
                path: ca.to_owned(),
                problem,
            })?;
            let pem = |problem: String| TlsError::Pem {
                path: ca.to_owned(),
                problem,
            };
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| pem(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let cfg = builder.with_single_cert(certs, key)?;
    Ok(Arc::new(cfg))
}

/// The CA certificates of a PEM file, as trust anchors.
///
/// # Errors
/// The file cannot be read, or holds no usable certificate.
pub fn roots_from_pem(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no CA certificate found".into());
    }
    Ok(roots)
}

/// A TLS client that trusts the CA certificates of a PEM file (the
/// proxy's backends, an OAuth introspection endpoint).
///
/// # Errors
/// As [`roots_from_pem`], with the file named.
pub fn connector_for(ca: &Path) -> Result<tokio_rustls::TlsConnector, String> {
    install_provider();
    let roots = roots_from_pem(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// Writes a self-signed certificate for `names` to `cert` and `key` (PEM).
///
/// # Errors
/// [`TlsError::Generate`] or an I/O error as [`TlsError::Pem`].
pub fn generate_self_signed(names: &[String], cert: &Path, key: &Path) -> Result<(), TlsError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |p: &Path, data: String| {
        tern_maildir::unique::write_atomic(p, data.as_bytes()).map_err(|e| TlsError::Pem {
            path: p.to_owned(),
            problem: e.to_string(),
        })
    };
    write(key, ck.key_pair.serialize_pem())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600));
    }
    write(cert, ck.cert.pem())?;
    Ok(())
}

/// What ties a SASL exchange to this TLS connection (RFC 5056): the data of
/// each channel-binding type tern offers for SCRAM-...-PLUS.
#[derive(Clone, Default)]
pub struct ChannelBindings {
    /// `tls-exporter` (RFC 9266): 32 bytes of keying material exported
    /// with the label `EXPORTER-Channel-Binding` and an empty context.
    pub exporter: Option<Vec<u8>>,
    /// `tls-server-end-point` (RFC 5929 §4): the hash of the server's
    /// certificate.
    pub end_point: Option<Vec<u8>>,
    /// The account name in the client's certificate, verified against
    /// `tls.client_ca` (SASL EXTERNAL).
    pub client_name: Option<String>,
}

impl std::fmt::Debug for ChannelBindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBindings")
            .field("exporter", &self.exporter.is_some())
            .field("end_point", &self.end_point.is_some())
            .field("client_name", &self.client_name)
            .finish()
    }
}

impl ChannelBindings {
    /// The bindings of an established server connection; `end_point` is
    /// [`end_point_hash`] of the certificate it presented.
    pub fn of(
        conn: &rustls::ServerConnection,
        end_point: Option<&[u8]>,
        field: crate::config::CertField,
    ) -> ChannelBindings {
        // rustls hands out a client certificate only once it verified.
        let client_name = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| subject_name(c, field));
        ChannelBindings {
            client_name,
            exporter: conn
                .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(b""))
                .ok()
                .map(|k| k.to_vec()),
            end_point: end_point.map(<[u8]>::to_vec),
        }
    }

    /// The data of the binding type `name`, if this connection has it.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-exporter" => self.exporter.as_deref(),
            "tls-server-end-point" => self.end_point.as_deref(),
            _ => None,
        }
    }
}

/// The children of the DER element whose contents are `der[start..start + len]`:
/// each one's tag, contents start and length, in order.
fn der_children(der: &[u8], start: usize, len: usize) -> Vec<(u8, usize, usize)> {
    let mut out = Vec::new();
    let mut at = start;
    while at < start + len {
        let Some((tag, s, l)) = der_element(der, at) else {
            break;
        };
        out.push((tag, s, l));
        at = s + l;
    }
    out
}

/// The first value of `field` in a certificate's subject. Read from a
/// certificate the TLS library has verified; a walk of fixed depth, so no
/// certificate can make it recurse or loop.
pub fn subject_name(cert_der: &[u8], field: crate::config::CertField) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
    let want = match field {
        crate::config::CertField::CommonName => CN,
        crate::config::CertField::EmailAddress => EMAIL,
    };
    let (_, body, len) = der_element(cert_der, 0)?;
    let (_, tbs, tbs_len) = *der_children(cert_der, body, len).first()?;
    let fields = der_children(cert_der, tbs, tbs_len);
    // [0] version (optional), serial, signature, issuer, validity, subject.
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let (tag, subject, subject_len) = *fields.get(skip + 4)?;
    if tag != 0x30 {
        return None;
    }
    for (set_tag, set, set_len) in der_children(cert_der, subject, subject_len) {
        if set_tag != 0x31 {
            continue;
        }
        for (_, atv, atv_len) in der_children(cert_der, set, set_len) {
            let parts = der_children(cert_der, atv, atv_len);
            let (Some(&(0x06, o, ol)), Some(&(vt, v, vl))) = (parts.first(), parts.get(1)) else {
                continue;
            };
            // UTF8String, PrintableString, IA5String, TeletexString.
            if &cert_der[o..o + ol] == want && matches!(vt, 0x0c | 0x13 | 0x16 | 0x14) {
                return std::str::from_utf8(&cert_der[v..v + vl])
                    .ok()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned);
            }
        }
    }
    None
}

/// Reads one DER element's header at `at`: its tag, where its contents
/// start, and their length.
fn der_element(der: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *der.get(at)?;
    let first = *der.get(at + 1)?;
    let (len, start) = if first < 0x80 {
        (usize::from(first), at + 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*der.get(at + 2 + i)?);
        }
        (len, at + 2 + n)
    };
    (start.checked_add(len)? <= der.len()).then_some((tag, start, len))
}

/// The `tls-server-end-point` hash of a certificate (RFC 5929 §4.1): with
/// the hash of its signature algorithm, SHA-256 where that is MD5, SHA-1
/// or SHA-256 or cannot be told (RSA-PSS, EdDSA).
pub fn end_point_hash(cert_der: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, ... }
    let oid = (|| {
        let (_, body, _) = der_element(cert_der, 0)?;
        let (_, tbs_start, tbs_len) = der_element(cert_der, body)?;
        let (_, alg, _) = der_element(cert_der, tbs_start + tbs_len)?;
        let (tag, oid, oid_len) = der_element(cert_der, alg)?;
        (tag == 0x06).then(|| &cert_der[oid..oid + oid_len])
    })();
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    match oid {
        Some(o) if SHA384.contains(&o) => sha2::Sha384::digest(cert_der).to_vec(),
        Some(o) if SHA512.contains(&o) => sha2::Sha512::digest(cert_der).to_vec(),
        _ => sha2::Sha256::digest(cert_der).to_vec(),
    }
}

/// The `tls-server-end-point` hash of the first certificate of a PEM file.
///
/// # Errors
/// [`TlsError::Pem`] when the file has no certificate.
pub fn end_point_of(cert: &Path) -> Result<Vec<u8>, TlsError> {
    let first = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            problem: e.to_string(),
        })?
        .next()
        .ok_or_else(|| TlsError::Pem {
            path: cert.to_owned(),
            problem: "no certificate found".into(),
        })?
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            problem: e.to_string(),
        })?;
    Ok(end_point_hash(&first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_point_hash_follows_the_signature_hash() {
        // rcgen signs with ECDSA P-256 SHA-256 by default: a SHA-256 hash.
        let ck = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        let der = ck.cert.der().to_vec();
        assert_eq!(end_point_hash(&der).len(), 32);
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&p384)
            .unwrap();
        assert_eq!(end_point_hash(cert.der()).len(), 48);
        // Garbage is hashed, never a panic.
        assert_eq!(end_point_hash(b"\x30\x85").len(), 32);
    }

    #[test]
    fn subject_names() {
        use crate::config::CertField;
        let mut p = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(
            subject_name(cert.der(), CertField::CommonName).as_deref(),
            Some("alice")
        );
        assert_eq!(subject_name(cert.der(), CertField::EmailAddress), None);
        assert_eq!(
            subject_name(b"\x30\x03\x30\x01", CertField::CommonName),
            None
        );
        assert_eq!(subject_name(b"", CertField::CommonName), None);
    }
}
