use ca_server::authority::ListFilter;
use serde_json::{Map, Value};

use super::CmdResult;
use crate::backend::Backend;
use crate::cli::Format;
use crate::{out, Out};

pub async fn run(
    b: &Backend,
    all: bool,
    signed: bool,
    revoked: bool,
    format: Format,
    out: &mut Out<'_>,
) -> CmdResult {
    let filter = if all {
        ListFilter::ALL
    } else if signed || revoked {
        ListFilter {
            requested: false,
            signed,
            revoked,
        }
    } else {
        ListFilter::REQUESTED
    };
    let statuses = b.list(filter).await?;
    match format {
        Format::Text => out.raw(&out::list_text(&statuses)),
        Format::Json => {
            let mut groups = Map::new();
            for (wanted, state) in [
                (filter.requested, "requested"),
                (filter.signed, "signed"),
                (filter.revoked, "revoked"),
            ] {
                if wanted {
                    let items: Vec<Value> = statuses
                        .iter()
                        .filter(|s| s.state == state)
                        .filter_map(|s| serde_json::to_value(s).ok())
                        .collect();
                    groups.insert(state.to_string(), Value::Array(items));
                }
            }
            let text = serde_json::to_string_pretty(&Value::Object(groups)).map_err(|e| e.to_string())?;
            out.line(&text);
        }
    }
    Ok(0)
}
