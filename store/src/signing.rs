//! DKIM signing of mail leaving the server: when a message from an authenticated user (or a
//! local program through `petrel sendmail`) is queued, every key of its From domain under
//! `DATA_DIR/dkim/` signs it once; the signatures travel in the queue envelope and are sent
//! before the message.

use crate::dkim_keys;
use crate::store::Store;
use petrel_core::dkim::{Signer, SignerConfig};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Largest header block read to find the From domain.
const MAX_HEADER: usize = 256 * 1024;

impl Store {
    /// The DKIM-Signature fields for the message at `path` (after `skip` bytes of Return-Path),
    /// one per key of its From domain; empty when the domain has none or anything fails (the
    /// message then goes unsigned, which is logged: signing never stops mail).
    pub(crate) fn dkim_signatures(&self, path: &Path, skip: usize) -> Vec<u8> {
        match self.try_sign(path, skip) {
            Ok(sigs) => sigs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot DKIM-sign a message; it goes unsigned");
                Vec::new()
            }
        }
    }

    fn try_sign(&self, path: &Path, skip: usize) -> std::io::Result<Vec<u8>> {
        let read_from_start = || -> std::io::Result<Box<dyn Read + Send>> {
            let mut f = self.fs.open_read(path)?;
            std::io::copy(&mut (&mut f).take(skip as u64), &mut std::io::sink())?;
            Ok(f)
        };
        let mut head = Vec::new();
        read_from_start()?
            .take(MAX_HEADER as u64)
            .read_to_end(&mut head)?;
        let end = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(head.len(), |p| p + 2);
        let Ok(domain) = petrel_core::auth::from_domain(&head[..end]) else {
            return Ok(Vec::new());
        };
        let keys = dkim_keys::keys_for(&*self.fs, &self.config.data_dir, &domain)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.config.clock.unix_seconds();
        let mut signers: Vec<Signer> = keys
            .into_iter()
            .map(|(selector, key)| {
                let mut config = SignerConfig::new(&domain, &selector);
                config.headers = self.dkim_headers.clone();
                Signer::new(config, Arc::new(key), now)
            })
            .collect();
        let mut input = read_from_start()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for s in &mut signers {
                s.feed(&buf[..n]);
            }
        }
        let mut out = Vec::new();
        for s in signers {
            let field = s
                .finish()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            out.extend_from_slice(field.as_bytes());
        }
        tracing::info!(%domain, "DKIM-signed");
        Ok(out)
    }
}
