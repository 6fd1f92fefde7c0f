//! `chatmail-metadata <socket> <chatmail.ini>`: IMAP METADATA dict and push notifier.
//!
//! `appversions.json` is read from the directory of the ini file. The environment variable
//! `CHATMAIL_NOTIFY_URL` replaces the notification proxy URL (tests, self-hosted proxies).

use std::ffi::OsString;
use std::process::ExitCode;

use chatmaild::metadata::notifier::{Notifier, NotifierSettings};
use chatmaild::metadata::tokens::TokenStore;
use chatmaild::metadata::{MetadataDict, QUEUE_DIR_NAME, appversions};

pub fn main(args: Vec<OsString>) -> ExitCode {
    chatmaild::cli::run_dict_service(args, |config| {
        let mbox = &config.mailboxes_dir;
        if !mbox.is_dir() {
            return Err(format!(
                "vmail dir does not exist: {:?}",
                mbox.display().to_string()
            ));
        }
        let queue_dir = mbox.join(QUEUE_DIR_NAME);
        std::fs::create_dir_all(&queue_dir)
            .map_err(|e| format!("cannot create {}: {e}", queue_dir.display()))?;
        let mut settings = NotifierSettings {
            url: config.notification_url.clone(),
            ..NotifierSettings::default()
        };
        if let Some(url) = std::env::var("CHATMAIL_NOTIFY_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            settings.url = url;
        }
        let notifier =
            Notifier::new(queue_dir, TokenStore::new(mbox), settings).map_err(|e| e.to_string())?;
        notifier.requeue_persisted().map_err(|e| e.to_string())?;
        let appversions_path = config
            .inipath
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(appversions::FILE_NAME);
        Ok(MetadataDict::new(&config, notifier, appversions_path))
    })
}
