//! Test certificates made with the `openssl` command: a fresh CA and server or client
//! certificates it signs, for the TLS tests of every provider.

use crate::TestbedError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The key algorithm of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA on P-256 (fast to make; what most tests use).
    #[default]
    EcP256,
    /// RSA 2048 (for servers whose TLS library is picky about EC keys).
    Rsa2048,
}

impl KeyType {
    fn newkey_args(self) -> &'static [&'static str] {
        match self {
            KeyType::EcP256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
            KeyType::Rsa2048 => &["-newkey", "rsa:2048", "-nodes"],
        }
    }
}

/// A certificate and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The certificate.
    pub cert: PathBuf,
    /// The unencrypted private key.
    pub key: PathBuf,
}

/// A self-signed test CA in a directory (`NAME.pem`, `NAME.key`), valid two days.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    name: String,
    key_type: KeyType,
}

/// Runs `openssl` with `args` in `dir`; an error carries its stderr.
pub fn openssl(dir: &Path, args: &[&str]) -> Result<(), TestbedError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| TestbedError::new(format!("cannot run openssl (needed for the TLS tests): {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TestbedError::new(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl TestCa {
    /// Makes the CA `NAME` (subject `CN=rekey test NAME`) in `dir`, which must exist.
    pub fn new(dir: &Path, name: &str, key_type: KeyType) -> Result<TestCa, TestbedError> {
        let (pem, key, subject) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("/CN=rekey test {name}"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend_from_slice(key_type.newkey_args());
        args.extend_from_slice(&[
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &args)?;
        Ok(TestCa {
            dir: dir.to_owned(),
            name: name.to_owned(),
            key_type,
        })
    }

    /// The CA certificate (PEM), the file a client trusts.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A server certificate `NAME.pem`/`NAME.key` for 127.0.0.1 and localhost.
    pub fn issue_server(&self, name: &str) -> Result<CertPair, TestbedError> {
        self.issue(
            name,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// A client certificate `NAME.pem`/`NAME.key` (extended key usage clientAuth).
    pub fn issue_client(&self, name: &str) -> Result<CertPair, TestbedError> {
        self.issue(
            name,
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        )
    }

    fn issue(&self, name: &str, extensions: &str) -> Result<CertPair, TestbedError> {
        let (pem, key, csr, ext) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        let subject = format!("/CN={name}");
        let mut req = vec!["req"];
        req.extend_from_slice(self.key_type.newkey_args());
        req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(&self.dir, &req)?;
        std::fs::write(self.dir.join(&ext), extensions)
            .map_err(|e| TestbedError::new(format!("cannot write {}: {e}", self.dir.join(&ext).display())))?;
        let (ca_pem, ca_key) = (format!("{}.pem", self.name), format!("{}.key", self.name));
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        )?;
        Ok(CertPair {
            cert: self.dir.join(pem),
            key: self.dir.join(key),
        })
    }
}
