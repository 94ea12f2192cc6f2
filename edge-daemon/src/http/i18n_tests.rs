//! Unit tests of the pages' languages and catalogue (`i18n.rs`).

use super::*;

#[test]
fn language_from_query_cookie_header_or_indonesian() {
    let mut h = HeaderMap::new();
    assert_eq!(Lang::of(None, &h), Lang::Id);
    h.insert(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9".parse().unwrap());
    assert_eq!(Lang::of(None, &h), Lang::En);
    h.insert(header::COOKIE, "a=b; garasi_lang=id".parse().unwrap());
    assert_eq!(Lang::of(None, &h), Lang::Id);
    assert_eq!(Lang::of(Some("en"), &h), Lang::En);
    assert_eq!(Lang::of(Some("<script>"), &h), Lang::Id);
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCEPT_LANGUAGE,
        "fr-FR, id;q=0.5, en;q=0.8".parse().unwrap(),
    );
    assert_eq!(Lang::of(None, &h), Lang::En, "the preferred one supported");
    h.insert(header::ACCEPT_LANGUAGE, "en;q=0, fr".parse().unwrap());
    assert_eq!(Lang::of(None, &h), Lang::Id, "q=0 means not wanted");
}

#[test]
fn fill_escapes_and_keeps_unknown_keys_visible() {
    let c = Catalogue::parse("[hello]\nid = \"Halo <b>\"\nen = \"Hello\"\n").unwrap();
    assert_eq!(
        c.fill(Lang::Id, "<p>{{t:hello}}</p>"),
        "<p>Halo &lt;b&gt;</p>"
    );
    assert_eq!(c.fill(Lang::En, "{{t:hello}} {{t:nope}}"), "Hello nope");
    assert_eq!(
        c.unknown_in("{{t:hello}}{{t:nope}}"),
        vec!["nope".to_string()]
    );
    assert_eq!(c.fill(Lang::En, "open {{t:hello"), "open {{t:hello");
}

#[test]
fn a_message_missing_a_language_is_refused() {
    let e = Catalogue::parse("[x]\nid = \"Satu\"\n").unwrap_err();
    assert!(e.to_string().contains("\"en\""), "{e}");
}
