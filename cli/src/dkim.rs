//! `petrel dkim keygen DOMAIN --selector S [--algorithm rsa|ed25519] [--force]`: makes a signing
//! key, stores it under `DATA_DIR/dkim/DOMAIN/S.pem` and prints the TXT record to publish.

use std::process::Command;

use petrel_core::dkim::{SigningKey, pem_decode, pem_encode};
use petrel_store::RealFs;
use petrel_store::dkim_keys;

use crate::Failure;
use crate::config::Config;

/// What `petrel dkim` was asked to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DkimCommand {
    /// Makes a signing key for DOMAIN and prints the DNS TXT record to publish.
    Keygen {
        /// The signing domain (d=).
        domain: String,
        /// The selector (s=): the key is published at SELECTOR._domainkey.DOMAIN.
        #[arg(long)]
        selector: String,
        /// `rsa` (2048 bits, understood by every verifier) or `ed25519` (RFC 8463).
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: KeyAlgorithm,
        /// Replace an existing key of that selector.
        #[arg(long)]
        force: bool,
    },
}

/// The kind of key `keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// RSA, 2048 bits.
    Rsa,
    /// Ed25519.
    Ed25519,
}

/// Runs a `petrel dkim` command.
pub fn run(config: &Config, command: DkimCommand) -> Result<(), Failure> {
    match command {
        DkimCommand::Keygen {
            domain,
            selector,
            algorithm,
            force,
        } => keygen(config, &domain, &selector, algorithm, force),
    }
}

fn keygen(
    config: &Config,
    domain: &str,
    selector: &str,
    algorithm: KeyAlgorithm,
    force: bool,
) -> Result<(), Failure> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let selector = selector.to_ascii_lowercase();
    // Validate before spending time on a key.
    dkim_keys::key_path(&config.data_dir, &domain, &selector)
        .map_err(|e| Failure::Config(format!("dkim keygen: {e}")))?;
    let der = match algorithm {
        KeyAlgorithm::Ed25519 => {
            let rng = ring::rand::SystemRandom::new();
            ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| Failure::Other("dkim keygen: no random numbers".into()))?
                .as_ref()
                .to_vec()
        }
        KeyAlgorithm::Rsa => rsa_2048_pkcs8()?,
    };
    let key = SigningKey::from_pkcs8_der(&der)
        .map_err(|e| Failure::Other(format!("dkim keygen: the new key is unusable: {e}")))?;
    let pem = pem_encode(&der, "PRIVATE KEY");
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Failure::Config(format!(
            "data_dir: cannot create {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let unique = format!("{}", std::process::id());
    let path = dkim_keys::write_key(
        &RealFs,
        &config.data_dir,
        &domain,
        &selector,
        pem.as_bytes(),
        force,
        &unique,
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Failure::Other(format!(
            "dkim keygen: {selector}._domainkey.{domain} already has a key; --force replaces it"
        )),
        _ => Failure::Other(format!("dkim keygen: {e}")),
    })?;
    eprintln!("petrel: key written to {}", path.display());
    println!(
        "{}",
        txt_record(&selector, &domain, &key.public_key_record())
    );
    Ok(())
}

/// `S._domainkey.DOMAIN. IN TXT ( "..." "..." )`, the record cut into character-strings of at
/// most 255 bytes (RFC 1035 3.3); verifiers join them (RFC 6376 3.6.2.2).
pub fn txt_record(selector: &str, domain: &str, record: &str) -> String {
    let strings: Vec<String> = record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{domain}. IN TXT ( {} )",
        strings.join(" ")
    )
}

/// A new 2048-bit RSA key as PKCS#8 DER. ring cannot generate RSA keys, so OpenSSL's command
/// line does it: one `openssl genpkey` a key, against pulling the `rsa` crate and its big-number
/// stack into every build for a command run once per domain. Ed25519 needs no OpenSSL.
fn rsa_2048_pkcs8() -> Result<Vec<u8>, Failure> {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .map_err(|e| {
            Failure::Other(format!(
                "dkim keygen: cannot run openssl to make an RSA key ({e}); install openssl or use --algorithm ed25519"
            ))
        })?;
    // PEM, which genpkey writes as PKCS#8 ("PRIVATE KEY"); its DER output for RSA is PKCS#1.
    let der = pem_decode(&String::from_utf8_lossy(&out.stdout), "PRIVATE KEY");
    match der {
        Some(der) if out.status.success() => Ok(der),
        _ => Err(Failure::Other(format!(
            "dkim keygen: openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_strings_are_at_most_255_bytes() {
        let record = format!("v=DKIM1; k=rsa; p={}", "A".repeat(600));
        let line = txt_record("s", "example.com", &record);
        assert!(line.starts_with("s._domainkey.example.com. IN TXT ( \""));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 3);
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings.concat(), record);
    }
}
