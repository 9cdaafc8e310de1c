//! `tollgate keygen`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::secret;
use crate::signing;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Key id to put in the config snippet; defaults to k<YYYYMMDD>.
    #[arg(long)]
    id: Option<String>,
    /// Write the key to this file (mode 0600, never overwritten) instead of
    /// printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let id = args.id.clone().unwrap_or_else(|| {
        let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        format!("k{}", today.get(..10).unwrap_or("").replace('-', ""))
    });
    anyhow::ensure!(signing::is_valid_id(&id), "--id {id:?}: use 1-128 characters of A-Z a-z 0-9 . _ -");
    let key = signing::generate_key().context("the OS random number generator failed")?;
    let Some(out) = &args.out else {
        #[expect(clippy::print_stdout, reason = "the key is the command's output")]
        {
            println!("{key}");
        }
        return Ok(());
    };
    secret::create_secret_file(out, &key).with_context(|| format!("cannot create {}", out.display()))?;
    eprintln!("wrote signing key {id:?} to {} (mode 0600)", out.display());
    eprintln!("add it to the key ring; make it active once every replica has it:\n");
    eprintln!("[[signing.keys]]\nid = \"{id}\"\nsecret_file = \"{}\"", out.display());
    Ok(())
}
