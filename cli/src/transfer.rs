//! `petrel import mbox|maildir ADDRESS PATH [--folder F]` and `petrel export ADDRESS FOLDER PATH`.

use crate::Failure;
use crate::config::Config;
use petrel_store::transfer::{self, Incoming};
use petrel_store::{RealFs, UserDb};
use std::path::Path;
use std::sync::Arc;

/// The format of what is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One mbox file (mboxrd or mboxo).
    Mbox,
    /// A Maildir directory (cur/ new/ tmp/).
    Maildir,
}

fn user(config: &Config, address: &str) -> Result<String, Failure> {
    let users = UserDb::new(Arc::new(RealFs), &config.data_dir);
    let list = users
        .list()
        .map_err(|e| Failure::Other(format!("cannot read the user database: {e}")))?;
    list.into_iter()
        .find(|u| u.eq_ignore_ascii_case(address))
        .ok_or_else(|| Failure::Other(format!("no user {address}")))
}

fn now() -> i64 {
    use petrel_core::WallClock;
    crate::SystemClock.unix_seconds()
}

/// Imports `path` into `address`'s `folder` (INBOX by default).
pub fn import(
    config: &Config,
    format: Format,
    address: &str,
    path: &Path,
    folder: Option<&str>,
) -> Result<(), Failure> {
    let user = user(config, address)?;
    let fs = RealFs;
    let dir = transfer::folder_dir(&config.data_dir, &user, folder)
        .map_err(|e| Failure::Config(e.to_string()))?;
    let other =
        |what: &str, e: std::io::Error| Failure::Other(format!("{what} {}: {e}", path.display()));
    let messages = match format {
        Format::Mbox => {
            let bytes = std::fs::read(path).map_err(|e| other("cannot read", e))?;
            petrel_core::mbox::parse(&bytes)
                .into_iter()
                .map(|m| Incoming {
                    message: m.message,
                    flags: m.flags,
                    date: m.date,
                })
                .collect()
        }
        Format::Maildir => {
            transfer::read_maildir(&fs, path).map_err(|e| other("cannot read", e))?
        }
    };
    let report = transfer::import(
        &fs,
        &dir,
        &config.hostname,
        now(),
        messages,
        |done, total| {
            if done % 1000 == 0 || (done == total && total >= 1000) {
                eprintln!("imported {done}/{total}");
            }
        },
    )
    .map_err(|e| other("import failed from", e))?;
    println!("{} added, {} already present", report.added, report.skipped);
    Ok(())
}

/// Exports `address`'s `folder` to `path`: a Maildir when `path` ends in `/` or is a
/// directory, an mbox file otherwise (written whole, then renamed into place).
pub fn export(config: &Config, address: &str, folder: &str, path: &Path) -> Result<(), Failure> {
    let user = user(config, address)?;
    let fs = RealFs;
    let dir = transfer::folder_dir(&config.data_dir, &user, Some(folder))
        .map_err(|e| Failure::Config(e.to_string()))?;
    if !dir.is_dir() {
        return Err(Failure::Other(format!("{address} has no folder {folder}")));
    }
    let fail =
        |e: std::io::Error| Failure::Other(format!("cannot export to {}: {e}", path.display()));
    let as_maildir = path.is_dir() || path.to_string_lossy().ends_with('/');
    let n = if as_maildir {
        transfer::export_maildir(&fs, &dir, path).map_err(fail)?
    } else {
        let tmp = path.with_extension("petrel-tmp");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(fail)?);
        let n = transfer::export_mbox(&fs, &dir, &mut file).map_err(fail)?;
        file.into_inner()
            .map_err(|e| fail(e.into_error()))?
            .sync_all()
            .map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)?;
        n
    };
    println!("{n} messages exported");
    Ok(())
}
