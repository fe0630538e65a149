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
    match format {
        Format::Text => {
            let window = b.expiry_window();
            warn_of_expiry(b, window, out).await;
            match b {
                Backend::Local(a) => list_text_streamed(a, filter, window.whole_seconds(), out).await?,
                Backend::Remote(_) => {
                    let statuses = b.list(filter).await?;
                    out.raw(&out::list_text(&statuses, now(), window.whole_seconds()));
                }
            }
        }
        Format::Json => {
            let statuses = b.list(filter).await?;
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
            let text = serde_json::to_string_pretty(&Value::Object(groups))?;
            out.line(&text);
        }
    }
    Ok(0)
}

/// The text listing in local mode, written as it is read, a page of statuses at a time, group after
/// group: the memory it takes does not grow with the CA (a million certificates listed in a few
/// megabytes, where the whole listing held at once took gigabytes).
async fn list_text_streamed(
    a: &ca_server::authority::Authority,
    filter: ListFilter,
    window: i64,
    out: &mut Out<'_>,
) -> anyhow::Result<()> {
    let longest = a.longest_listed_name(filter).await?;
    let now = now();
    let mut any = false;
    for (state, title) in out::LIST_GROUPS {
        let only = ListFilter {
            requested: state == "requested" && filter.requested,
            signed: state == "signed" && filter.signed,
            revoked: state == "revoked" && filter.revoked,
        };
        if !(only.requested || only.signed || only.revoked) {
            continue;
        }
        let mut titled = false;
        a.list_each(only, |page| {
            let mut text = String::new();
            for s in page.iter().filter(|s| s.state == state) {
                if !titled {
                    text.push_str(title);
                    text.push('\n');
                    titled = true;
                }
                out::push_status_line(&mut text, s, longest, now, window);
            }
            out.raw(&text);
        })
        .await?;
        any |= titled;
    }
    if !any {
        out.raw(out::NOTHING_LISTED);
    }
    Ok(())
}

fn now() -> i64 {
    use ca_server::clock::Clock as _;
    ca_server::clock::SystemClock.now().unix_timestamp()
}

/// Warnings (stderr) for the CA, server and admin certificates expiring within `window` (the CRLs are
/// the server's to re-sign, and it logs when it fails to).
async fn warn_of_expiry(b: &Backend, window: time::Duration, out: &mut Out<'_>) {
    use ca_server::authority::ExpiringKind;
    let Ok(items) = b.expirations(Some(window), false).await else {
        return;
    };
    let own = [ExpiringKind::Ca, ExpiringKind::Server, ExpiringKind::Admin];
    for i in items.iter().filter(|i| own.contains(&i.kind)) {
        let when = if i.days_left < 0 {
            format!("expired on {}", i.expires)
        } else {
            format!("expires in {} days ({})", i.days_left, i.expires)
        };
        let what = match i.kind {
            ExpiringKind::Ca => format!("the CA certificate '{}'", i.name),
            ExpiringKind::Server => format!("the server certificate '{}'", i.name),
            _ => format!("the admin certificate '{}'", i.name),
        };
        out.warn(&format!("{what} {when}"));
    }
}
