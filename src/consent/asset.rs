//! Where each download form's lead magnet lives, resolved once at startup so a missing file
//! stops startup instead of failing a person at download time.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::{ConfigError, Settings};

/// A download form's asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadAsset {
    /// A file in `consent.downloads_dir`, streamed by the signed link.
    File { path: PathBuf, name: String },
    /// One of Inlet's built-in demo files (by name), streamed by the signed link.
    Builtin(String),
    /// Anywhere else: the signed link counts the download and redirects here.
    Url(String),
}

/// Form id -> asset, for every form that has one.
#[derive(Debug, Clone, Default)]
pub struct ResolvedAssets {
    by_form: HashMap<String, DownloadAsset>,
}

impl ResolvedAssets {
    pub fn resolve(
        settings: &Settings,
        builtins: &crate::snippet::Assets,
        public_url: &str,
    ) -> Result<ResolvedAssets, ConfigError> {
        let mut by_form = HashMap::new();
        for form in &settings.forms {
            let setting = |k: &str| format!("forms[{}].{k}", form.id);
            let asset = match (&form.download_file, &form.download_url) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::invalid(
                        setting("download_file"),
                        "set download_file or download_url, not both",
                    ))
                }
                (Some(name), None) => {
                    let plain = !name.is_empty()
                        && !name.starts_with('.')
                        && !name.contains(['/', '\\'])
                        && name.len() <= 200;
                    if !plain {
                        return Err(ConfigError::invalid(
                            setting("download_file"),
                            format!(
                                "'{name}' must be a plain file name inside consent.downloads_dir"
                            ),
                        ));
                    }
                    let on_disk = settings
                        .consent
                        .downloads_dir
                        .as_ref()
                        .map(|d| d.join(name))
                        .filter(|p| p.is_file());
                    match on_disk {
                        Some(path) => DownloadAsset::File {
                            path,
                            name: name.clone(),
                        },
                        None if builtins.download(name).is_some() => {
                            DownloadAsset::Builtin(name.clone())
                        }
                        None => {
                            return Err(ConfigError::invalid(
                                setting("download_file"),
                                format!(
                                    "no file '{name}' in consent.downloads_dir ({})",
                                    settings.consent.downloads_dir.as_ref().map_or_else(
                                        || "not set: INLET_DOWNLOADS_DIR".to_string(),
                                        |d| d.display().to_string()
                                    )
                                ),
                            ))
                        }
                    }
                }
                (None, Some(url)) => DownloadAsset::Url(
                    if url.starts_with("http://") || url.starts_with("https://") {
                        url.clone()
                    } else {
                        format!("{public_url}/{}", url.trim_start_matches('/'))
                    },
                ),
                (None, None) => continue,
            };
            by_form.insert(form.id.clone(), asset);
        }
        Ok(ResolvedAssets { by_form })
    }

    pub fn get(&self, form_id: &str) -> Option<&DownloadAsset> {
        self.by_form.get(form_id)
    }
}
