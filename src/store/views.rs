//! Daily form-view counters (see [`crate::views`]): added to, never rewritten.

use super::sql::{split, Sql};
use super::{LeadStore, StoreError};
use crate::views::{ViewCount, ViewKey};

impl LeadStore {
    /// Adds counters to the stored ones (one upsert per 64 counters, in one transaction).
    pub async fn add_views(&self, items: &[(ViewKey, ViewCount)]) -> Result<(), StoreError> {
        let mut tx = self.pools.begin().await?;
        for chunk in split(items) {
            let mut sql = Sql::for_dialect(
                self.dialect(),
                "INSERT INTO form_views (day, form_id, source, campaign, views, unique_views, \
                 private_views) VALUES "
                    .into(),
            );
            for (n, (k, c)) in chunk.iter().enumerate() {
                sql.push(if n == 0 { "(" } else { ", (" });
                sql.bind_int(k.day).push(", ");
                sql.bind_text(&k.form_id).push(", ");
                sql.bind_text(&k.source).push(", ");
                sql.bind_text(&k.campaign).push(", ");
                sql.bind_int(c.views).push(", ");
                sql.bind_int(c.unique_views).push(", ");
                sql.bind_int(c.private_views).push(")");
            }
            sql.push(
                " ON CONFLICT (day, form_id, source, campaign) DO UPDATE SET \
                 views = form_views.views + excluded.views, \
                 unique_views = form_views.unique_views + excluded.unique_views, \
                 private_views = form_views.private_views + excluded.private_views",
            );
            tx.exec().execute(&sql).await?;
        }
        tx.commit().await
    }
}
