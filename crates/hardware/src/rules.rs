//! What makes an item acceptable: one place for the API's writes and imports.

use wire::ItemInput;

/// The limits are part of the wire contract (and of the generated OpenAPI document).
pub use wire::{MAX_NAME_CHARS, MAX_PROVIDER_CHARS};

/// Checks both fields; the message names the field and says why.
pub fn check_item(input: &ItemInput) -> Result<(), String> {
    check_field("provider", &input.provider, MAX_PROVIDER_CHARS)?;
    check_field("name", &input.name, MAX_NAME_CHARS)
}

fn check_field(field: &str, value: &str, max: usize) -> Result<(), String> {
    let problem = if value.trim().is_empty() {
        "must not be empty".to_owned()
    } else if value.chars().count() > max {
        format!("must be at most {max} characters")
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else if value.trim() != value {
        "must not start or end with white space".to_owned()
    } else {
        return Ok(());
    };
    Err(format!("{field} {problem}"))
}
