//! The console's pages: server-rendered minijinja templates (HTML auto-escaped, so whatever a
//! lead typed is shown as text), one stylesheet, no scripts, so they work without JavaScript
//! under the same strict CSP as the rest of Inlet.

use std::sync::Arc;

use minijinja::Environment;

/// The console's stylesheet, served at `/console/console.css`.
pub const STYLESHEET: &str = include_str!("console.css");

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("login.html", include_str!("templates/login.html")),
    ("setup.html", include_str!("templates/setup.html")),
    ("link.html", include_str!("templates/link.html")),
    ("password.html", include_str!("templates/password.html")),
    ("error.html", include_str!("templates/error.html")),
    ("leads.html", include_str!("templates/leads.html")),
    ("lead.html", include_str!("templates/lead.html")),
    ("erase.html", include_str!("templates/erase.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("deliveries.html", include_str!("templates/deliveries.html")),
    ("forms.html", include_str!("templates/forms.html")),
    ("people.html", include_str!("templates/people.html")),
    ("keys.html", include_str!("templates/keys.html")),
    ("import.html", include_str!("templates/import.html")),
    ("handoffs.html", include_str!("templates/handoffs.html")),
    ("sequences.html", include_str!("templates/sequences.html")),
];

/// A moment as a marketer reads it (UTC, to the minute).
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// The compiled console templates (built once at startup).
#[derive(Clone)]
pub struct ConsolePages {
    env: Arc<Environment<'static>>,
}

impl ConsolePages {
    pub fn new() -> Result<ConsolePages, minijinja::Error> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(ConsolePages { env: Arc::new(env) })
    }

    /// Renders a page. `Err` is the apology to show (with a 500): a template error is a bug,
    /// never something a request can cause, and is logged.
    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| {
                tracing::error!(error = %e, template = name, "console page failed to render");
                "<!doctype html><html lang=\"en\"><title>Inlet</title><p>Something went wrong.</p></html>"
                    .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn every_page_renders_and_escapes_what_a_lead_typed() {
        let pages = ConsolePages::new().unwrap();
        let html = pages
            .render(
                "error.html",
                context! { title => "<b>x</b>", message => "<script>alert(1)</script>" },
            )
            .unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(!html.contains("Something went wrong"));
        // A template that fails is an error, not a page.
        assert!(pages.render("missing.html", context! {}).is_err());
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }
}
