//! Project and table names found whatever their case. SQL folds unquoted identifiers to lower
//! case (`SELECT * FROM LineOrder` asks for `lineorder`), and names in Qilin may hold capitals
//! (`qilin-jobs table add --name LineOrder`): a lookup tries the exact name, then the one name
//! equal to it ignoring case. Column names keep SQL's rules (a quoted one matches exactly).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result;

/// `name` itself if `names` holds it, else the only name equal to it ignoring case.
fn resolve(names: Vec<String>, name: &str) -> Option<String> {
    if names.iter().any(|n| n == name) {
        return Some(name.to_string());
    }
    let mut same = names.into_iter().filter(|n| n.eq_ignore_ascii_case(name));
    let first = same.next()?;
    same.next().is_none().then_some(first)
}

/// A schema (one project) whose tables are found ignoring case.
#[derive(Debug)]
pub(crate) struct FoldedSchema(pub Arc<dyn SchemaProvider>);

#[async_trait]
impl SchemaProvider for FoldedSchema {
    fn table_names(&self) -> Vec<String> {
        self.0.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match resolve(self.0.table_names(), name) {
            Some(n) => self.0.table(&n).await,
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        resolve(self.0.table_names(), name).is_some()
    }
}

/// The catalog whose schemas (projects) are found ignoring case.
#[derive(Debug)]
pub(crate) struct FoldedCatalog(pub Arc<dyn CatalogProvider>);

impl CatalogProvider for FoldedCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.0.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.0.schema(&resolve(self.0.schema_names(), name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
    use datafusion::datasource::MemTable;

    #[tokio::test]
    async fn exact_names_first_then_the_one_equal_ignoring_case() {
        let schema = Arc::new(MemorySchemaProvider::new());
        let empty =
            || Arc::new(MemTable::try_new(Arc::new(Schema::empty()), vec![vec![]]).unwrap());
        for n in ["LineOrder", "dates", "Dates", "part"] {
            schema.register_table(n.into(), empty()).unwrap();
        }
        let catalog = MemoryCatalogProvider::new();
        catalog
            .register_schema("SSB", Arc::new(FoldedSchema(schema)))
            .unwrap();
        let catalog = FoldedCatalog(Arc::new(catalog));
        let ssb = catalog.schema("ssb").expect("project by folded name");
        assert!(catalog.schema("other").is_none());
        for found in [
            "lineorder",
            "LINEORDER",
            "LineOrder",
            "dates",
            "Dates",
            "PART",
        ] {
            assert!(ssb.table_exist(found), "{found}");
            assert!(ssb.table(found).await.unwrap().is_some(), "{found}");
        }
        // Two tables equal ignoring case: only their exact names find them.
        assert!(!ssb.table_exist("DATES"));
        assert!(ssb.table("DATES").await.unwrap().is_none());
        assert_eq!(ssb.table_names().len(), 4);
    }
}
