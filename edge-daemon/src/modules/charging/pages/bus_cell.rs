//! The Charging page's bus cell: the bus on a connector's running transaction and, for
//! a dispatcher, a small form to bind the right bus (the charger sent an unknown card,
//! none, or the wrong bus's). The form names the transaction it was rendered for, so the
//! API refuses it if the bus changed meanwhile; one list of the fleet's buses serves
//! every form (`<datalist>`), and `charging.js` sends it and shows the refusal in the
//! page's language.

use crate::http::i18n::{Catalogue, Lang};
use crate::modules::charging::sessions::Session;
use crate::util::esc;

/// Message keys these cells use.
pub(super) const KEYS: &[&str] = &[
    "bind",
    "bind_change",
    "bind_label",
    "bus_unknown",
    "bound_by",
    "bind_e400",
    "bind_e403",
    "bind_e404",
    "bind_e409",
    "bind_efail",
];

/// The fleet's buses for every form's suggestions, and the refusals' words.
pub(super) fn datalist(w: &Catalogue, lang: Lang, buses: &[String]) -> String {
    let t = |k: &str| esc(w.t(lang, k));
    let mut out = format!(
        "<datalist id=\"fleet-buses\" data-e400=\"{}\" data-e403=\"{}\" data-e404=\"{}\" data-e409=\"{}\" data-efail=\"{}\">",
        t("bind_e400"),
        t("bind_e403"),
        t("bind_e404"),
        t("bind_e409"),
        t("bind_efail")
    );
    for b in buses {
        out.push_str(&format!("<option value=\"{}\">", esc(b)));
    }
    out.push_str("</datalist>");
    out
}

/// The cell for a connector: empty without a running transaction.
pub(super) fn render(w: &Catalogue, lang: Lang, s: Option<&Session>) -> String {
    let Some(s) = s else {
        return "<td class=\"bus\"></td>".into();
    };
    let t = |k: &str| esc(w.t(lang, k));
    let shown = match (&s.vehicle_id, &s.id_tag) {
        (Some(v), _) => format!("<b>{}</b>", esc(v)),
        (None, Some(tag)) => format!(
            "<span class=\"risk\">{}</span><br><span class=\"muted\">{}</span>",
            t("bus_unknown"),
            esc(tag)
        ),
        (None, None) => format!("<span class=\"risk\">{}</span>", t("bus_unknown")),
    };
    let by = s
        .bound_by
        .as_deref()
        .map(|p| {
            format!(
                "<br><span class=\"muted\">{} {}</span>",
                t("bound_by"),
                esc(p)
            )
        })
        .unwrap_or_default();
    // Folded away unless the bus is unknown: most rows need no change.
    let open = if s.vehicle_id.is_none() { " open" } else { "" };
    format!(
        "<td class=\"bus\">{shown}{by}<details class=\"bind\" data-key=\"{c}/{k}\"{open}><summary>{change}</summary>\
<form class=\"bind\" data-charger=\"{c}\" data-connector=\"{k}\" data-tx=\"{tx}\">\
<input name=\"vehicle\" list=\"fleet-buses\" value=\"{v}\" aria-label=\"{label}\" autocomplete=\"off\" size=\"9\">\
<button type=\"submit\">{bind}</button><span class=\"bind-error error\" role=\"alert\"></span></form></details></td>",
        change = t("bind_change"),
        c = esc(&s.charger_id),
        k = s.connector_id,
        tx = s.transaction_id,
        v = esc(s.vehicle_id.as_deref().unwrap_or_default()),
        label = t("bind_label"),
        bind = t("bind"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(vehicle: Option<&str>, tag: Option<&str>) -> Session {
        Session {
            transaction_id: 7,
            charger_id: "CP-1".into(),
            connector_id: 2,
            origin: "start".into(),
            charger_tx_id: None,
            id_tag: tag.map(str::to_string),
            vehicle_id: vehicle.map(str::to_string),
            start_ms: Some(1),
            meter_start_wh: Some(0),
            stop_ms: None,
            meter_stop_wh: None,
            stop_reason: None,
            last_wh: None,
            last_ms: None,
            energy_wh: None,
            bound_by: vehicle.map(|_| "ani".to_string()),
        }
    }

    #[test]
    fn an_unknown_bus_is_said_and_its_form_open_a_known_one_folded_and_escaped() {
        let w = Catalogue::parse(include_str!("messages.toml")).unwrap();
        let cell = render(&w, Lang::En, Some(&session(None, Some("<card>"))));
        assert!(
            cell.contains("Unknown bus: choose it") && cell.contains("&lt;card&gt;"),
            "{cell}"
        );
        assert!(
            cell.contains("<details class=\"bind\" data-key=\"CP-1/2\" open>"),
            "{cell}"
        );
        assert!(cell.contains("data-tx=\"7\""), "{cell}");
        let cell = render(&w, Lang::Id, Some(&session(Some("bus-1"), Some("card"))));
        assert!(
            cell.contains("<b>bus-1</b>") && cell.contains("dipasang oleh ani"),
            "{cell}"
        );
        assert!(cell.contains("data-key=\"CP-1/2\">"), "folded: {cell}");
        assert_eq!(render(&w, Lang::En, None), "<td class=\"bus\"></td>");
    }
}
