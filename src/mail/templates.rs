//! Per-form email templates, compiled once at startup: a template error stops startup and
//! names the form and line, so it can never surface at send time.

use std::sync::Arc;

use minijinja::{AutoEscape, Environment};

use crate::config::{ConfigError, Settings};

/// The subject is rendered with the form only, never the submitted fields: no user-typed
/// text may reach a mail header.
pub const DEFAULT_SUBJECT: &str = "{% if form.kind == 'download' %}Your download is ready{% \
     elif form.kind == 'newsletter' %}Welcome aboard{% else %}Thanks for getting in touch{% endif %}";

pub const DEFAULT_TEXT: &str = "Hello{% if fields.name %} {{ fields.name }}{% endif %},

{{ form.success_message }}
{% if download_url %}
Your download: {{ download_url }}
{% endif %}
You are receiving this because this address was entered on our {{ form.id }} form.
{% if unsubscribe_url %}Unsubscribe: {{ unsubscribe_url }}
{% endif %}";

pub const DEFAULT_HTML: &str = "<!doctype html>
<html><body style=\"font-family: sans-serif; line-height: 1.5\">
<p>Hello{% if fields.name %} {{ fields.name }}{% endif %},</p>
<p>{{ form.success_message }}</p>
{% if download_url %}<p><a href=\"{{ download_url }}\">Download your copy</a></p>{% endif %}
<p style=\"color: #666; font-size: 12px\">You are receiving this because this address was
entered on our {{ form.id }} form.{% if unsubscribe_url %}
<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>{% endif %}</p>
</body></html>
";

/// Built-in owner notification templates ('/' cannot appear in a form id, so no clash).
pub const OWNER_SUBJECT: &str = "builtin/owner.subject";
pub const OWNER_TEXT: &str = "builtin/owner.txt";
pub const OWNER_HTML: &str = "builtin/owner.html";

const OWNER_SUBJECT_SRC: &str = "New lead from the {{ form.id }} form";
const OWNER_TEXT_SRC: &str = "A new lead arrived through the {{ form.id }} form.

{% for label, value in rows %}{{ label }}: {{ value }}
{% endfor %}
Lead id: {{ lead_id }}
Submission id: {{ submission_id }}
{% if quarantined %}
Also: {{ quarantined }} submission{% if quarantined != 1 %}s{% endif %} to this form in the 24 hours before this one {% if quarantined != 1 %}were{% else %}was{% endif %} quarantined as spam (no email was sent). Review them with `inlet leads export --status quarantined` and restore a real person with `inlet leads restore <email>`.
{% endif %}";
const OWNER_HTML_SRC: &str = "<!doctype html>
<html><body style=\"font-family: sans-serif\">
<p>A new lead arrived through the <strong>{{ form.id }}</strong> form.</p>
<table>{% for label, value in rows %}
<tr><th align=\"left\">{{ label }}</th><td>{{ value }}</td></tr>{% endfor %}
</table>
{% if quarantined %}<p>Also: {{ quarantined }} submission{% if quarantined != 1 %}s{% endif %} to this form in the 24 hours before this one {% if quarantined != 1 %}were{% else %}was{% endif %} quarantined as spam (no email was sent). Review them with <code>inlet leads export --status quarantined</code> and restore a real person with <code>inlet leads restore &lt;email&gt;</code>.</p>{% endif %}
<p style=\"color:#666;font-size:12px\">Lead {{ lead_id }}, submission {{ submission_id }}</p>
</body></html>
";

/// Built-in double opt-in confirmation: the address and the link, nothing the person typed.
pub const CONFIRM_SUBJECT: &str = "builtin/confirm.subject";
pub const CONFIRM_TEXT: &str = "builtin/confirm.txt";
pub const CONFIRM_HTML: &str = "builtin/confirm.html";
/// Built-in fresh download link (asked for from an expired one).
pub const DOWNLOAD_SUBJECT: &str = "builtin/download.subject";
pub const DOWNLOAD_TEXT: &str = "builtin/download.txt";
pub const DOWNLOAD_HTML: &str = "builtin/download.html";

const CONFIRM_SUBJECT_SRC: &str = "Please confirm your address";
const CONFIRM_TEXT_SRC: &str = "Please confirm that {{ address }} may receive email from us.

Confirm: {{ confirm_url }}
{% if until %}
The link works until {{ until }}.{% endif %}
If you did not ask for this, ignore this message: nothing more will be sent.
";
const CONFIRM_HTML_SRC: &str = "<!doctype html>
<html><body style=\"font-family: sans-serif; line-height: 1.5\">
<p>Please confirm that <strong>{{ address }}</strong> may receive email from us.</p>
<p><a href=\"{{ confirm_url }}\">Confirm my address</a></p>
{% if until %}<p>The link works until {{ until }}.</p>{% endif %}
<p style=\"color:#666;font-size:12px\">If you did not ask for this, ignore this message:
nothing more will be sent.</p>
</body></html>
";
const DOWNLOAD_SUBJECT_SRC: &str = "Your new download link";
const DOWNLOAD_TEXT_SRC: &str = "Here is a fresh link to your download:

{{ download_url }}
{% if unsubscribe_url %}
Unsubscribe: {{ unsubscribe_url }}
{% endif %}";
const DOWNLOAD_HTML_SRC: &str = "<!doctype html>
<html><body style=\"font-family: sans-serif; line-height: 1.5\">
<p>Here is a fresh link to your download:</p>
<p><a href=\"{{ download_url }}\">Download your copy</a></p>
{% if unsubscribe_url %}<p style=\"color:#666;font-size:12px\"><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>{% endif %}
</body></html>
";

/// Where a sequence step's templates live: `seq/{sequence}/{step}` + `.subject` / `.txt` /
/// `.html` ('/' cannot appear in a form id, so no clash).
pub fn step_template(sequence: &str, step: &str) -> String {
    format!("seq/{sequence}/{step}")
}

fn template_error(at: &str, e: &minijinja::Error) -> ConfigError {
    let line = e.line().map(|l| format!(" (line {l})")).unwrap_or_default();
    ConfigError::invalid(
        at,
        format!(
            "template error{line}: {}",
            e.detail().unwrap_or("invalid template")
        ),
    )
}

/// A plain-text body as HTML: escaped, paragraphs at blank lines, line breaks kept, and
/// `http(s)` links made clickable.
pub fn paragraphs(text: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut body = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let mut html = escape(para).replace('\n', "<br>\n");
        for link in crate::sequences::links_in(para) {
            let escaped = escape(&link);
            let anchor = format!("<a href=\"{escaped}\">{escaped}</a>");
            html = html.replace(&escaped, &anchor);
        }
        body.push_str(&format!("<p>{html}</p>\n"));
    }
    format!(
        "<!doctype html>\n<html><body style=\"font-family: sans-serif; line-height: 1.5\">\n{body}</body></html>\n"
    )
}

/// Compiled templates for every form, named `{form}.subject`, `{form}.txt`, `{form}.html`.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    pub fn build(settings: &Settings) -> Result<Templates, ConfigError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        for (name, src) in [
            (OWNER_SUBJECT, OWNER_SUBJECT_SRC),
            (OWNER_TEXT, OWNER_TEXT_SRC),
            (OWNER_HTML, OWNER_HTML_SRC),
            (CONFIRM_SUBJECT, CONFIRM_SUBJECT_SRC),
            (CONFIRM_TEXT, CONFIRM_TEXT_SRC),
            (CONFIRM_HTML, CONFIRM_HTML_SRC),
            (DOWNLOAD_SUBJECT, DOWNLOAD_SUBJECT_SRC),
            (DOWNLOAD_TEXT, DOWNLOAD_TEXT_SRC),
            (DOWNLOAD_HTML, DOWNLOAD_HTML_SRC),
        ] {
            env.add_template(name, src)
                .map_err(|e| ConfigError::invalid("built-in email template", e.to_string()))?;
        }
        let error = |form: &str, key: &str, e: &minijinja::Error| {
            let line = e.line().map(|l| format!(" (line {l})")).unwrap_or_default();
            ConfigError::invalid(
                format!("forms[{form}].follow_up.{key}"),
                format!(
                    "template error{line}: {}",
                    e.detail().unwrap_or("invalid template")
                ),
            )
        };
        for form in &settings.forms {
            let parts = [
                (
                    "subject",
                    "subject",
                    form.follow_up.subject.as_deref(),
                    DEFAULT_SUBJECT,
                ),
                ("txt", "text", form.follow_up.text.as_deref(), DEFAULT_TEXT),
                ("html", "html", form.follow_up.html.as_deref(), DEFAULT_HTML),
            ];
            for (ext, key, custom, default) in parts {
                let name = format!("{}.{ext}", form.id);
                let source = custom.unwrap_or(default).to_string();
                env.add_template_owned(name, source)
                    .map_err(|e| error(&form.id, key, &e))?;
            }
        }
        for seq in &settings.sequences {
            for step in &seq.steps {
                let name = step_template(&seq.id, &step.id);
                let parts = [
                    ("subject", Some(step.subject.as_str())),
                    ("txt", Some(step.text.as_str())),
                    ("html", step.html.as_deref()),
                ];
                for (ext, source) in parts {
                    let Some(source) = source else { continue };
                    let at = format!("sequences[{}].steps[{}].{ext}", seq.id, step.id);
                    env.add_template_owned(format!("{name}.{ext}"), source.to_string())
                        .map_err(|e| template_error(&at, &e))?;
                    let ctx = minijinja::context! {
                        sequence => minijinja::context! { id => &seq.id, name => "Sample" },
                        step => minijinja::context! { id => &step.id, number => 1, total => 3 },
                        fields => minijinja::context! { name => "sample" },
                        unsubscribe_url => "https://example.com/u", lead_id => "id",
                    };
                    env.get_template(&format!("{name}.{ext}"))
                        .and_then(|t| t.render(&ctx))
                        .map_err(|e| template_error(&at, &e))?;
                }
            }
        }
        // Render-time failures (an unknown filter, say) are found now, not at send time: render
        // each template once with sample values for every field.
        for form in &settings.forms {
            let fields: std::collections::BTreeMap<&str, &str> = form
                .fields
                .iter()
                .map(|f| (f.name.as_str(), "sample"))
                .collect();
            let ctx = minijinja::context! {
                form => minijinja::context! { id => &form.id, kind => form.kind,
                                              success_message => "Thanks" },
                fields => fields, download_url => "https://example.com/x", lead_id => "id",
                unsubscribe_url => "https://example.com/u",
            };
            for (ext, key) in [("subject", "subject"), ("txt", "text"), ("html", "html")] {
                env.get_template(&format!("{}.{ext}", form.id))
                    .and_then(|t| t.render(&ctx))
                    .map_err(|e| error(&form.id, key, &e))?;
            }
        }
        Ok(Templates { env: Arc::new(env) })
    }

    /// Renders one template with a serialisable context.
    pub fn render(
        &self,
        name: &str,
        ctx: impl serde::Serialize,
    ) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}
