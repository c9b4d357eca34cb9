//! Features, providers, models, prices and reprice requests, on Postgres ([`CatalogStore`]).

use super::*;
use tally_domain::store::CatalogStore;

#[async_trait]
impl CatalogStore for PostgresConfigStore {
    async fn list_features(&self) -> StoreResult<Vec<Feature>> {
        seam(async || -> Result<Vec<Feature>> {
            all(
                sqlx::query("SELECT * FROM ai_features ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?,
                feature_row,
            )
        })
        .await
    }

    #[instrument(name = "config.upsert_feature", skip_all, fields(feature = %spec.name), err)]
    async fn upsert_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature> {
        seam(async || -> Result<Feature> { self.write_feature(spec, change, Write::Upsert).await })
            .await
    }

    #[instrument(name = "config.create_feature", skip_all, fields(feature = %spec.name), err)]
    async fn create_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature> {
        seam(async || -> Result<Feature> { self.write_feature(spec, change, Write::Create).await })
            .await
    }

    #[instrument(name = "config.delete_feature", skip(self, change), err)]
    async fn delete_feature(&self, name: &str, change: &Change) -> StoreResult<Feature> {
        seam(async || -> Result<Feature> {
            let mut tx = self.pool.begin().await?;
            let feature = find_feature(&mut tx, name)
                .await?
                .ok_or_else(|| missing::feature(name))?;
            let refs: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM feature_model_assignments WHERE feature_id = $1)
                      + (SELECT COUNT(*) FROM ai_prompts WHERE feature_id = $1)
                      + (SELECT COUNT(*) FROM ai_experiments WHERE feature_id = $1)",
            )
            .bind(feature.id)
            .fetch_one(&mut *tx)
            .await?;
            rules::feature_deletable(name, refs)?;
            sqlx::query("DELETE FROM ai_features WHERE id = $1")
                .bind(feature.id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&feature), None).await?;
            Ok(feature)
        })
        .await
    }

    async fn list_providers(&self) -> StoreResult<Vec<Provider>> {
        seam(async || -> Result<Vec<Provider>> {
            all(
                sqlx::query("SELECT * FROM ai_providers ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?,
                provider_row,
            )
        })
        .await
    }

    #[instrument(name = "config.upsert_provider", skip_all, fields(provider = %spec.name), err)]
    async fn upsert_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider> {
        seam(async || -> Result<Provider> {
            self.write_provider(spec, change, Write::Upsert).await
        })
        .await
    }

    #[instrument(name = "config.create_provider", skip_all, fields(provider = %spec.name), err)]
    async fn create_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider> {
        seam(async || -> Result<Provider> {
            self.write_provider(spec, change, Write::Create).await
        })
        .await
    }

    #[instrument(name = "config.delete_provider", skip(self, change), err)]
    async fn delete_provider(&self, name: &str, change: &Change) -> StoreResult<Provider> {
        seam(async || -> Result<Provider> {
            let mut tx = self.pool.begin().await?;
            let provider = find_provider(&mut tx, name)
                .await?
                .ok_or_else(|| missing::provider(name))?;
            let models: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM ai_models WHERE provider_id = $1")
                    .bind(provider.id)
                    .fetch_one(&mut *tx)
                    .await?;
            rules::provider_deletable(name, models)?;
            sqlx::query("DELETE FROM ai_providers WHERE id = $1")
                .bind(provider.id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&provider), None).await?;
            Ok(provider)
        })
        .await
    }

    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        seam(async || -> Result<Vec<Model>> {
            all(
                sqlx::query(&format!("{MODEL_SELECT} ORDER BY p.name, m.name"))
                    .fetch_all(&self.pool)
                    .await?,
                model_row,
            )
        })
        .await
    }

    #[instrument(name = "config.upsert_model", skip_all, fields(model = %spec.name), err)]
    async fn upsert_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model> {
        seam(async || -> Result<Model> { self.write_model(spec, change, Write::Upsert).await })
            .await
    }

    #[instrument(name = "config.create_model", skip_all, fields(model = %spec.name), err)]
    async fn create_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model> {
        seam(async || -> Result<Model> { self.write_model(spec, change, Write::Create).await })
            .await
    }

    #[instrument(name = "config.delete_model", skip(self, change), err)]
    async fn delete_model(&self, id: Uuid, change: &Change) -> StoreResult<Model> {
        seam(async || -> Result<Model> {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT id FROM ai_models WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| missing::model(id))?;
            let row = sqlx::query(&format!("{MODEL_SELECT} WHERE m.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let model = model_row(&row)?;
            let deployments: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM feature_model_assignments WHERE model_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            rules::model_deletable(&model, deployments)?;
            sqlx::query("DELETE FROM ai_models WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&model), None).await?;
            Ok(model)
        })
        .await
    }

    #[instrument(name = "config.add_price", skip_all, fields(model = %spec.model), err)]
    async fn add_price(&self, spec: PriceSpec, change: &Change) -> StoreResult<ModelPrice> {
        seam(async || -> Result<ModelPrice> {
            let mut tx = self.pool.begin().await?;
            let model_id = model_id(&mut tx, &spec.provider, &spec.model).await?;
            let id = Uuid::new_v4();
            let inserted = sqlx::query(
                "INSERT INTO ai_model_prices (id, model_id, effective_from, input_per_mtok_micros, output_per_mtok_micros, cached_input_per_mtok_micros, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (model_id, effective_from) DO NOTHING",
            )
            .bind(id)
            .bind(model_id)
            .bind(spec.effective_from)
            .bind(spec.input_per_mtok_micros)
            .bind(spec.output_per_mtok_micros)
            .bind(spec.cached_input_per_mtok_micros)
            .bind(now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(rules::price_taken(&spec.provider, &spec.model, spec.effective_from).into());
            }
            let row = sqlx::query(&format!("{PRICE_SELECT} WHERE x.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let price = price_row(&row)?;
            let entry = price_added(change, model_id, &price);
            insert_audit(&mut tx, &entry).await?;
            tx.commit().await?;
            Ok(price)
        })
        .await
    }

    #[instrument(name = "config.add_reprice", skip_all, fields(model = %spec.model), err)]
    async fn add_reprice(&self, spec: RepriceSpec, change: &Change) -> StoreResult<Reprice> {
        seam(async || -> Result<Reprice> {
            spec.check()?;
            let mut tx = self.pool.begin().await?;
            let model_id = model_id(&mut tx, &spec.provider, &spec.model).await?;
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO model_reprices (id, provider, model, from_at, requested_at, requested_by, prices) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(&spec.provider)
            .bind(&spec.model)
            .bind(spec.from)
            .bind(spec.requested_at)
            .bind(&spec.requested_by)
            .bind(Json(&spec.prices))
            .execute(&mut *tx)
            .await?;
            let reprice = Reprice { id, spec };
            let entry = repriced(change, model_id, &reprice);
            insert_audit(&mut tx, &entry).await?;
            tx.commit().await?;
            Ok(reprice)
        })
        .await
    }

    async fn list_reprices(&self) -> StoreResult<Vec<Reprice>> {
        seam(async || -> Result<Vec<Reprice>> {
            let mut rows = all(
                sqlx::query(
                    "SELECT id, provider, model, from_at, requested_at, requested_by, prices FROM model_reprices",
                )
                .fetch_all(&self.pool)
                .await?,
                |r| {
                    Ok(Reprice {
                        id: r.try_get("id")?,
                        spec: RepriceSpec {
                            provider: r.try_get("provider")?,
                            model: r.try_get("model")?,
                            from: r.try_get("from_at")?,
                            requested_at: r.try_get("requested_at")?,
                            requested_by: r.try_get("requested_by")?,
                            prices: r.try_get::<Json<Vec<ModelPrice>>, _>("prices")?.0,
                        },
                    })
                },
            )?;
            rows.sort_by_key(|r| (r.spec.requested_at, r.id));
            Ok(rows)
        })
        .await
    }

    async fn list_prices(&self) -> StoreResult<Vec<ModelPrice>> {
        seam(async || -> Result<Vec<ModelPrice>> {
            all(
                sqlx::query(&format!(
                    "{PRICE_SELECT} ORDER BY p.name, m.name, x.effective_from"
                ))
                .fetch_all(&self.pool)
                .await?,
                price_row,
            )
        })
        .await
    }
}

const PRICE_SELECT: &str = "SELECT x.id, p.name AS provider, m.name AS model, x.effective_from, x.input_per_mtok_micros, x.output_per_mtok_micros, x.cached_input_per_mtok_micros, x.created_at FROM ai_model_prices x JOIN ai_models m ON m.id = x.model_id JOIN ai_providers p ON p.id = m.provider_id";

fn price_row(r: &PgRow) -> Result<ModelPrice> {
    Ok(ModelPrice {
        id: r.try_get("id")?,
        provider: r.try_get("provider")?,
        model: r.try_get("model")?,
        effective_from: r.try_get("effective_from")?,
        input_per_mtok_micros: r.try_get("input_per_mtok_micros")?,
        output_per_mtok_micros: r.try_get("output_per_mtok_micros")?,
        cached_input_per_mtok_micros: r.try_get("cached_input_per_mtok_micros")?,
        created_at: r.try_get("created_at")?,
    })
}
