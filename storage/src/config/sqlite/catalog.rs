//! Features, providers, models, prices and reprice requests, on SQLite ([`CatalogStore`]).

use super::*;
use tally_domain::store::CatalogStore;

#[async_trait]
impl CatalogStore for SqliteConfigStore {
    async fn list_features(&self) -> StoreResult<Vec<Feature>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{FEATURE_SELECT} ORDER BY name"))?;
            let rows = stmt
                .query_map([], feature_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upsert_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature> {
        let find = |c: &Connection, s: &FeatureSpec| find_feature(c, &s.name);
        self.write_named(change, Write::Upsert, spec, find, put_feature)
            .await
    }

    async fn create_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature> {
        let find = |c: &Connection, s: &FeatureSpec| find_feature(c, &s.name);
        self.write_named(change, Write::Create, spec, find, put_feature)
            .await
    }

    async fn delete_feature(&self, name: &str, change: &Change) -> StoreResult<Feature> {
        let name = name.to_string();
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let feature = find_feature(&tx, &name)?.ok_or_else(|| missing::feature(&name))?;
            let id = feature.id.to_string();
            let refs: i64 = tx.query_row(
                "SELECT (SELECT COUNT(*) FROM feature_model_assignments WHERE feature_id = ?1)
                      + (SELECT COUNT(*) FROM ai_prompts WHERE feature_id = ?1)
                      + (SELECT COUNT(*) FROM ai_experiments WHERE feature_id = ?1)",
                params![id],
                |r| r.get(0),
            )?;
            rules::feature_deletable(&name, refs)?;
            tx.execute("DELETE FROM ai_features WHERE id = ?1", params![id])?;
            insert_audit(&tx, &change.on("delete", Some(&feature), None))?;
            tx.commit()?;
            Ok(feature)
        })
        .await
    }

    async fn list_providers(&self) -> StoreResult<Vec<Provider>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{PROVIDER_SELECT} ORDER BY name"))?;
            let rows = stmt
                .query_map([], provider_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upsert_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider> {
        let find = |c: &Connection, s: &ProviderSpec| find_provider(c, &s.name);
        self.write_named(change, Write::Upsert, spec, find, put_provider)
            .await
    }

    async fn create_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider> {
        let find = |c: &Connection, s: &ProviderSpec| find_provider(c, &s.name);
        self.write_named(change, Write::Create, spec, find, put_provider)
            .await
    }

    async fn delete_provider(&self, name: &str, change: &Change) -> StoreResult<Provider> {
        let name = name.to_string();
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let provider = find_provider(&tx, &name)?.ok_or_else(|| missing::provider(&name))?;
            let models: i64 = tx.query_row(
                "SELECT COUNT(*) FROM ai_models WHERE provider_id = ?1",
                params![provider.id.to_string()],
                |r| r.get(0),
            )?;
            rules::provider_deletable(&name, models)?;
            tx.execute(
                "DELETE FROM ai_providers WHERE id = ?1",
                params![provider.id.to_string()],
            )?;
            insert_audit(&tx, &change.on("delete", Some(&provider), None))?;
            tx.commit()?;
            Ok(provider)
        })
        .await
    }

    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{MODEL_SELECT} ORDER BY p.name, m.name"))?;
            let rows = stmt
                .query_map([], model_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upsert_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model> {
        let find = |c: &Connection, s: &ModelSpec| find_model(c, &s.provider, &s.name);
        self.write_named(change, Write::Upsert, spec, find, put_model)
            .await
    }

    async fn create_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model> {
        let find = |c: &Connection, s: &ModelSpec| find_model(c, &s.provider, &s.name);
        self.write_named(change, Write::Create, spec, find, put_model)
            .await
    }

    async fn delete_model(&self, id: Uuid, change: &Change) -> StoreResult<Model> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let model = tx
                .query_row(
                    &format!("{MODEL_SELECT} WHERE m.id = ?1"),
                    params![id.to_string()],
                    model_row,
                )
                .optional()?
                .ok_or_else(|| missing::model(id))?;
            let deployments: i64 = tx.query_row(
                "SELECT COUNT(*) FROM feature_model_assignments WHERE model_id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )?;
            rules::model_deletable(&model, deployments)?;
            tx.execute(
                "DELETE FROM ai_models WHERE id = ?1",
                params![id.to_string()],
            )?;
            insert_audit(&tx, &change.on("delete", Some(&model), None))?;
            tx.commit()?;
            Ok(model)
        })
        .await
    }

    async fn add_price(&self, spec: PriceSpec, change: &Change) -> StoreResult<ModelPrice> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let model_id = model_id(&tx, &spec.provider, &spec.model)?;
            let id = Uuid::new_v4().to_string();
            let inserted = tx.execute(
                "INSERT INTO ai_model_prices (id, model_id, effective_from, input_per_mtok_micros, output_per_mtok_micros, cached_input_per_mtok_micros, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (model_id, effective_from) DO NOTHING",
                params![id, model_id, ts(spec.effective_from), spec.input_per_mtok_micros, spec.output_per_mtok_micros, spec.cached_input_per_mtok_micros, ts(Utc::now())],
            )?;
            if inserted == 0 {
                return Err(rules::price_taken(&spec.provider, &spec.model, spec.effective_from).into());
            }
            let price = tx.query_row(&format!("{PRICE_SELECT} WHERE x.id = ?1"), params![id], price_row)?;
            insert_audit(&tx, &price_added(&change, &model_id, &price))?;
            tx.commit()?;
            Ok(price)
        })
        .await
    }

    async fn add_reprice(&self, spec: RepriceSpec, change: &Change) -> StoreResult<Reprice> {
        spec.check()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let model_id = model_id(&tx, &spec.provider, &spec.model)?;
            let id = Uuid::new_v4();
            tx.execute(
                "INSERT INTO model_reprices (id, provider, model, from_at, requested_at, requested_by, prices) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id.to_string(),
                    spec.provider,
                    spec.model,
                    ts(spec.from),
                    ts(spec.requested_at),
                    spec.requested_by,
                    json_text(&spec.prices)?
                ],
            )?;
            let reprice = Reprice { id, spec };
            insert_audit(&tx, &repriced(&change, &model_id, &reprice))?;
            tx.commit()?;
            Ok(reprice)
        })
        .await
    }

    async fn list_reprices(&self) -> StoreResult<Vec<Reprice>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, provider, model, from_at, requested_at, requested_by, prices FROM model_reprices",
            )?;
            let mut rows = stmt
                .query_map([], |r| {
                    Ok(Reprice {
                        id: parse_uuid(&r.get::<_, String>(0)?)?,
                        spec: RepriceSpec {
                            provider: r.get(1)?,
                            model: r.get(2)?,
                            from: parse_ts(&r.get::<_, String>(3)?)?,
                            requested_at: parse_ts(&r.get::<_, String>(4)?)?,
                            requested_by: r.get(5)?,
                            prices: json_column(&r.get::<_, String>(6)?, "reprice prices")?,
                        },
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.sort_by_key(|r| (r.spec.requested_at, r.id));
            Ok(rows)
        })
        .await
    }

    async fn list_prices(&self) -> StoreResult<Vec<ModelPrice>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{PRICE_SELECT} ORDER BY p.name, m.name, x.effective_from"
            ))?;
            let rows = stmt
                .query_map([], price_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

fn feature_row(r: &Row) -> rusqlite::Result<Feature> {
    let status: String = r.get(4)?;
    let config: String = r.get(5)?;
    Ok(Feature {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        display_name: r.get(2)?,
        description: r.get(3)?,
        status: FeatureStatus::parse(&status).ok_or_else(|| conversion("feature status"))?,
        config: serde_json::from_str(&config).map_err(|_| conversion("feature config"))?,
        created_at: parse_ts(&r.get::<_, String>(6)?)?,
        updated_at: parse_ts(&r.get::<_, String>(7)?)?,
    })
}

/// A text column holding one of an enum's words.
fn word<T>(
    r: &Row,
    column: usize,
    what: &'static str,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    parse(&r.get::<_, String>(column)?).ok_or_else(|| conversion(what))
}

fn provider_row(r: &Row) -> rusqlite::Result<Provider> {
    Ok(Provider {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        provider_type: word(r, 2, "provider type", ProviderType::parse)?,
        status: word(r, 3, "provider status", ProviderStatus::parse)?,
        base_url: r.get(4)?,
        api_key_env: r.get(5)?,
        created_at: parse_ts(&r.get::<_, String>(6)?)?,
        updated_at: parse_ts(&r.get::<_, String>(7)?)?,
    })
}

const MODEL_SELECT: &str = "SELECT m.id, m.name, p.name, m.model_type, m.version, m.capabilities, m.status, m.created_at, m.updated_at FROM ai_models m JOIN ai_providers p ON p.id = m.provider_id";

fn model_row(r: &Row) -> rusqlite::Result<Model> {
    let caps: String = r.get(5)?;
    Ok(Model {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        provider: r.get(2)?,
        model_type: word(r, 3, "model type", ModelType::parse)?,
        version: r.get(4)?,
        capabilities: serde_json::from_str(&caps).map_err(|_| conversion("capabilities"))?,
        status: word(r, 6, "model status", ModelStatus::parse)?,
        created_at: parse_ts(&r.get::<_, String>(7)?)?,
        updated_at: parse_ts(&r.get::<_, String>(8)?)?,
    })
}

const PRICE_SELECT: &str = "SELECT x.id, p.name, m.name, x.effective_from, x.input_per_mtok_micros, x.output_per_mtok_micros, x.cached_input_per_mtok_micros, x.created_at FROM ai_model_prices x JOIN ai_models m ON m.id = x.model_id JOIN ai_providers p ON p.id = m.provider_id";

fn price_row(r: &Row) -> rusqlite::Result<ModelPrice> {
    Ok(ModelPrice {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        provider: r.get(1)?,
        model: r.get(2)?,
        effective_from: parse_ts(&r.get::<_, String>(3)?)?,
        input_per_mtok_micros: r.get(4)?,
        output_per_mtok_micros: r.get(5)?,
        cached_input_per_mtok_micros: r.get(6)?,
        created_at: parse_ts(&r.get::<_, String>(7)?)?,
    })
}

const FEATURE_SELECT: &str = "SELECT id, name, display_name, description, status, config, created_at, updated_at FROM ai_features";

const PROVIDER_SELECT: &str = "SELECT id, name, type, status, base_url, api_key_env, created_at, updated_at FROM ai_providers";

fn put_feature(c: &Connection, spec: &FeatureSpec, mode: Write) -> Result<Feature> {
    let sql = format!(
        "INSERT INTO ai_features (id, name, display_name, description, status, config, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (name) {}",
        mode.on_conflict(&["display_name", "description", "status", "config", "updated_at"])
    );
    let written = c.execute(
        &sql,
        params![
            Uuid::new_v4().to_string(),
            spec.name,
            spec.display_name,
            spec.description,
            spec.status.as_str(),
            spec.config.to_string(),
            ts(Utc::now())
        ],
    )?;
    if written == 0 {
        return Err(rules::name_taken("feature", &spec.name).into());
    }
    Ok(c.query_row(
        &format!("{FEATURE_SELECT} WHERE name = ?1"),
        params![spec.name],
        feature_row,
    )?)
}

fn put_provider(c: &Connection, spec: &ProviderSpec, mode: Write) -> Result<Provider> {
    let sql = format!(
        "INSERT INTO ai_providers (id, name, type, status, base_url, api_key_env, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (name) {}",
        mode.on_conflict(&["type", "status", "base_url", "api_key_env", "updated_at"])
    );
    let written = c.execute(
        &sql,
        params![
            Uuid::new_v4().to_string(),
            spec.name,
            spec.provider_type.as_str(),
            spec.status.as_str(),
            spec.base_url,
            spec.api_key_env,
            ts(Utc::now())
        ],
    )?;
    if written == 0 {
        return Err(rules::name_taken("provider", &spec.name).into());
    }
    Ok(c.query_row(
        &format!("{PROVIDER_SELECT} WHERE name = ?1"),
        params![spec.name],
        provider_row,
    )?)
}

fn put_model(c: &Connection, spec: &ModelSpec, mode: Write) -> Result<Model> {
    let provider_id: String = c
        .query_row(
            "SELECT id FROM ai_providers WHERE name = ?1",
            params![spec.provider],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| missing::provider(&spec.provider))?;
    let sql = format!(
        "INSERT INTO ai_models (id, name, provider_id, model_type, version, capabilities, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) ON CONFLICT (provider_id, name) {}",
        mode.on_conflict(&["model_type", "version", "capabilities", "status", "updated_at"])
    );
    let written = c.execute(
        &sql,
        params![
            Uuid::new_v4().to_string(),
            spec.name,
            provider_id,
            spec.model_type.as_str(),
            spec.version,
            json_text(&spec.capabilities)?,
            spec.status.as_str(),
            ts(Utc::now())
        ],
    )?;
    if written == 0 {
        return Err(rules::name_taken("model", &format!("{}/{}", spec.provider, spec.name)).into());
    }
    Ok(c.query_row(
        &format!("{MODEL_SELECT} WHERE p.name = ?1 AND m.name = ?2"),
        params![spec.provider, spec.name],
        model_row,
    )?)
}

fn find_feature(c: &Connection, name: &str) -> Result<Option<Feature>> {
    Ok(c.query_row(
        &format!("{FEATURE_SELECT} WHERE name = ?1"),
        params![name],
        feature_row,
    )
    .optional()?)
}

fn find_provider(c: &Connection, name: &str) -> Result<Option<Provider>> {
    Ok(c.query_row(
        &format!("{PROVIDER_SELECT} WHERE name = ?1"),
        params![name],
        provider_row,
    )
    .optional()?)
}

fn find_model(c: &Connection, provider: &str, name: &str) -> Result<Option<Model>> {
    Ok(c.query_row(
        &format!("{MODEL_SELECT} WHERE p.name = ?1 AND m.name = ?2"),
        params![provider, name],
        model_row,
    )
    .optional()?)
}
