//! The board's runs table (TODS timetables only): each run with its time, the pieces of
//! blocks it drives, its driver (a choice for signed-in staff) and its conflicts, such as
//! a relief at the wrong place or time. A day without runs shows no such table.

use super::{hm, s};
use crate::modules::dispatch::service::Dispatch;
use crate::util::esc;

/// The runs table for a day view ("" when the day has no runs).
pub(super) fn runs_table(d: &Dispatch, view: &serde_json::Value, staff: bool) -> String {
    let empty = Vec::new();
    let runs = view["runs"].as_array().unwrap_or(&empty);
    if runs.is_empty() {
        return String::new();
    }
    let date = s(view, "date");
    let drivers = view["drivers"].as_array().unwrap_or(&empty);
    let names: std::collections::HashMap<&str, &str> = view["blocks"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|b| (s(b, "id"), s(b, "block")))
        .collect();
    let block_name = |id: &str| names.get(id).copied().unwrap_or(id).to_string();
    let mut rows = String::new();
    for r in runs {
        let pieces: Vec<String> = r["events"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|e| {
                let what = match e["block"].as_str() {
                    Some(b) => format!("<b>{}</b>", esc(&block_name(b))),
                    None => esc(s(e, "type")),
                };
                format!(
                    "<li>{what}: {} {} → {} {}</li>",
                    esc(s(e, "from_name")),
                    hm(d, e["start_ms"].as_i64().unwrap_or(0), date),
                    esc(s(e, "to_name")),
                    hm(d, e["end_ms"].as_i64().unwrap_or(0), date),
                )
            })
            .collect();
        let driver = if staff {
            let current = s(r, "driver");
            let mut opts = String::from("<option value=\"\">none</option>");
            for p in drivers {
                let id = s(p, "id");
                opts.push_str(&format!(
                    "<option value=\"{}\"{}>{}</option>",
                    esc(id),
                    if id == current { " selected" } else { "" },
                    esc(s(p, "name"))
                ));
            }
            format!(
                "<select class=\"run-driver\" data-run=\"{}\" aria-label=\"Driver of run {}\">{opts}</select>",
                esc(s(r, "id")),
                esc(s(r, "run"))
            )
        } else {
            r["driver_name"]
                .as_str()
                .map(esc)
                .unwrap_or_else(|| "<span class=\"muted\">none</span>".into())
        };
        let flags: String = r["conflicts"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|c| {
                format!(
                    "<span class=\"flag {}\">{}</span>",
                    esc(s(c, "code")),
                    esc(s(c, "message"))
                )
            })
            .collect();
        rows.push_str(&format!(
            "<tr data-run=\"{id}\"><td><b>Run {run}</b><br><span class=\"muted\">{emp}</span></td>\
<td>{start}–{end}</td><td><ul class=\"pieces\">{pieces}</ul></td><td class=\"driver\">{driver}</td>\
<td class=\"flags\">{flags}</td></tr>\n",
            id = esc(s(r, "id")),
            run = esc(s(r, "run")),
            // The agency's employee ids are for staff, not the wall board.
            emp = r["employees"]
                .as_str()
                .filter(|_| staff)
                .map(|e| format!("rostered: {}", esc(e)))
                .unwrap_or_default(),
            start = hm(d, r["start_ms"].as_i64().unwrap_or(0), date),
            end = hm(d, r["end_ms"].as_i64().unwrap_or(0), date),
            pieces = pieces.join(""),
        ));
    }
    format!(
        "<h2>Runs</h2><table id=\"runs\"><thead><tr><th>Run</th><th>Time</th><th>Pieces (relief points)</th><th>Driver</th><th>Conflicts</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}
