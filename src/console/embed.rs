//! The markup a marketer pastes for a form: its fields as plain HTML that works without
//! JavaScript (the embed script enhances it), posting to Inlet.

use std::fmt::Write;

use crate::config::FieldType;
use crate::forms::Form;

use super::charts::escape as attr;

/// `<form data-inlet="…" action="…" method="post">` with a label and an input per field.
pub fn form_html(form: &Form, public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    let id = attr(&form.id);
    let mut out = format!(
        "<form data-inlet=\"{id}\" action=\"{base}/v1/forms/{id}/submissions\" method=\"post\">\n"
    );
    for f in &form.fields {
        let (name, label) = (attr(&f.name), attr(&f.label));
        let field_id = format!("{id}-{name}");
        let required = if f.required { " required" } else { "" };
        let _ = match f.kind {
            FieldType::Hidden => writeln!(out, "  <input type=\"hidden\" name=\"{name}\" value=\"\">"),
            FieldType::Checkbox => writeln!(
                out,
                "  <label><input type=\"checkbox\" name=\"{name}\" value=\"true\"{required}> {label}</label>"
            ),
            FieldType::Textarea => writeln!(
                out,
                "  <label for=\"{field_id}\">{label}</label>\n  <textarea id=\"{field_id}\" name=\"{name}\"{required}></textarea>"
            ),
            FieldType::Select => {
                let options: String = f
                    .options
                    .iter()
                    .map(|o| format!("<option>{}</option>", attr(o)))
                    .collect();
                writeln!(
                    out,
                    "  <label for=\"{field_id}\">{label}</label>\n  <select id=\"{field_id}\" name=\"{name}\"{required}>{options}</select>"
                )
            }
            kind => {
                let (input, complete) = match kind {
                    FieldType::Email => ("email", " autocomplete=\"email\""),
                    FieldType::Tel => ("tel", " autocomplete=\"tel\""),
                    FieldType::Url => ("url", ""),
                    _ => ("text", ""),
                };
                writeln!(
                    out,
                    "  <label for=\"{field_id}\">{label}</label>\n  <input id=\"{field_id}\" name=\"{name}\" type=\"{input}\"{complete}{required}>"
                )
            }
        };
    }
    out.push_str("  <button type=\"submit\">Send</button>\n</form>");
    out
}
