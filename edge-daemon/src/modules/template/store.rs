//! template's table, `template_items`, and its queries. Only this module reads it.

use rusqlite::{params, Connection};

use super::service::Item;
use crate::store::migrate::Migration;

/// Never edit a migration that shipped: add version N+1.
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "items",
    sql: "CREATE TABLE template_items (
            id TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            set_by TEXT NOT NULL,
            updated_ms INTEGER NOT NULL
          );",
}];

pub(super) fn put(c: &Connection, item: &Item) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO template_items (id, label, set_by, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(id) DO UPDATE SET label = excluded.label, set_by = excluded.set_by,
           updated_ms = excluded.updated_ms",
        params![item.id, item.label, item.set_by, item.updated_ms],
    )?;
    Ok(())
}

pub(super) fn list(c: &Connection) -> rusqlite::Result<Vec<Item>> {
    let mut st = c.prepare_cached(
        "SELECT id, label, set_by, updated_ms FROM template_items ORDER BY id LIMIT 1000",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Item {
            id: r.get(0)?,
            label: r.get(1)?,
            set_by: r.get(2)?,
            updated_ms: r.get(3)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_list_replaces_by_id() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate::run(&mut c, "template", MIGRATIONS).unwrap();
        let mut item = Item {
            id: "a".into(),
            label: "first".into(),
            set_by: "p1".into(),
            updated_ms: 1,
        };
        put(&c, &item).unwrap();
        item.label = "second".into();
        put(&c, &item).unwrap();
        assert_eq!(list(&c).unwrap(), vec![item]);
    }
}
