//! `POST /search/assets` and `POST /search/models`. Assets: the caller's assets (and, with
//! `public`, everyone's public ones) found by the database's own text search (`easel_store::assets::search`: SQLite FTS5 or
//! PostgreSQL `tsvector` over each asset's name, description, prompt and tags), narrowed by
//! `filter` expressions, paged by `offset`/`limit` or `page`/`hitsPerPage`, with the totals.
//!
//! `filter` takes the subset of the search engine syntax Scenario's clients write that maps
//! onto the asset filters: clauses joined by `AND`, each `attribute = value` or
//! `attribute IN [v1, v2]` (values bare or quoted; lists not empty), over `privacy`, `tags`
//! (any of), `collectionIds`, `type` (the asset types `GetAssets` takes), `modelId`,
//! `parentAssetId` and `inferenceId` (also as `metadata.modelId`, `metadata.parentId`,
//! `metadata.parentJobId`).
//! Anything else (`OR`, `NOT`, comparisons, other attributes) is a 400 naming `filter`.
//! Models: the server's and the caller's own (with `public`, everyone's public ones), found by
//! the same text search over names, aliases, family, tasks, tags and descriptions
//! ([`easel_store::models::search`]), filtered and paged here (the registry is small).
//! Image similarity (`image`, `images`, a semantic ratio above 0) needs embeddings this server
//! does not compute: a 400 naming the field.

use super::*;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioSearchRequest)]
pub(super) struct SearchRequest {
    query: Option<String>,
    filter: Option<String>,
    #[schema(value_type = Option<Object>)]
    image: Option<Value>,
    #[schema(value_type = Option<Object>)]
    images: Option<Value>,
    image_semantic_ratio: Option<f64>,
    query_semantic_ratio: Option<f64>,
    public: Option<bool>,
    offset: Option<f64>,
    limit: Option<f64>,
    page: Option<f64>,
    hits_per_page: Option<f64>,
    sort_by: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioSearchHit)]
pub(super) struct SearchHit {
    #[serde(flatten)]
    asset: AssetView,
    /// No teams here: the owner.
    team_id: String,
    /// No content classifier runs here: none detected.
    nsfw: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioSearchAssets)]
pub(super) struct SearchPage {
    hits: Vec<SearchHit>,
    #[serde(flatten)]
    counts: Counts,
}

/// Where a page of hits is, and how many there are in all.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioSearchCounts)]
pub(super) struct Counts {
    offset: u64,
    limit: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hits_per_page: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_pages: Option<u64>,
    total_hits: u64,
    estimated_total_hits: u64,
}

/// The paging a search's query string may carry: the official client asks for its next
/// pages with `?offset=N` on the same request body. A value there wins over the body's.
#[derive(Deserialize)]
pub(super) struct SearchQuery {
    offset: Option<String>,
    limit: Option<String>,
    #[serde(flatten)]
    _others: std::collections::HashMap<String, String>,
}

impl SearchQuery {
    fn over(self, mut body: SearchRequest) -> Result<SearchRequest, Error> {
        let number = |field: &str, v: &str| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| Error::invalid(field, format!("must be a whole number (got `{v}`)")))
        };
        if let Some(o) = self.offset.as_deref() {
            body.offset = Some(number("offset", o)?);
            if body.page.is_some() && body.hits_per_page.is_some() {
                // A next page of a page-numbered search: the offset stands for the page.
                body.page = None;
                body.limit = body.hits_per_page.take();
            }
        }
        if let Some(l) = self.limit.as_deref() {
            body.limit = Some(number("limit", l)?);
        }
        Ok(body)
    }
}

/// A whole number of a request in `min..=max`, else a 400 naming `field`.
fn whole(field: &str, v: Option<f64>, min: u64, max: u64) -> Result<Option<u64>, Error> {
    match v {
        None => Ok(None),
        Some(x) if x.fract() == 0.0 && x >= min as f64 && x <= max as f64 => Ok(Some(x as u64)),
        Some(x) => Err(Error::invalid(
            field,
            format!("must be a whole number from {min} to {max} (got {x})"),
        )),
    }
}

/// The most assets a search skips: deep pages cost the database a scan.
const MAX_OFFSET: u64 = 100_000;

/// What both searches take from a request: the text, the filter, the page, the order
/// (attribute and whether descending).
struct Plan {
    text: Option<String>,
    filter: Option<String>,
    offset: u64,
    limit: u64,
    by_page: bool,
    sort: Option<(String, bool)>,
}

/// The common rules of a search request; errors name the field.
fn plan(body: &SearchRequest) -> Result<Plan, Error> {
    for (field, given) in [
        ("image", body.image.is_some()),
        ("images", body.images.is_some()),
        (
            "imageSemanticRatio",
            body.image_semantic_ratio.is_some_and(|r| r > 0.0),
        ),
        (
            "querySemanticRatio",
            body.query_semantic_ratio.is_some_and(|r| r > 0.0),
        ),
    ] {
        if given {
            return Err(Error::invalid(
                field,
                "similarity search needs image and text embeddings, which this server does not \
                 compute; search by `query` and `filter`",
            ));
        }
    }
    let text = easel_core::asset::search_text("query", body.query.as_deref())?;
    let filter = body
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string);
    if text.is_none() && filter.is_none() {
        return Err(Error::invalid("query", "give a `query` or a `filter`"));
    }
    let paging = (
        whole("offset", body.offset, 0, MAX_OFFSET)?,
        whole("limit", body.limit, 1, 100)?,
        whole("page", body.page, 1, MAX_OFFSET)?,
        whole("hitsPerPage", body.hits_per_page, 1, 100)?,
    );
    let (offset, limit, by_page) = match paging {
        (o, l, None, None) => (o.unwrap_or(0), l.unwrap_or(20), false),
        (None, None, p, h) => {
            let (p, h) = (p.unwrap_or(1), h.unwrap_or(20));
            ((p - 1) * h, h, true)
        }
        (_, _, p, _) => {
            return Err(Error::invalid(
                if p.is_some() { "page" } else { "hitsPerPage" },
                "use `offset` and `limit`, or `page` and `hitsPerPage`, not both",
            ))
        }
    };
    if offset > MAX_OFFSET {
        return Err(Error::invalid(
            if by_page { "page" } else { "offset" },
            format!("a search shows at most its first {MAX_OFFSET} hits"),
        ));
    }
    let sort = match body.sort_by.as_deref().unwrap_or_default() {
        [] => None,
        [one] => {
            let (attribute, dir) = one.trim().split_once(':').unwrap_or((one.trim(), "asc"));
            let desc = match dir {
                "asc" => false,
                "desc" => true,
                _ => {
                    return Err(Error::invalid(
                        "sortBy",
                        format!("`{one}`: `attribute:asc` or `attribute:desc`"),
                    ))
                }
            };
            Some((attribute.to_string(), desc))
        }
        _ => return Err(Error::invalid("sortBy", "sort by one attribute")),
    };
    Ok(Plan {
        text,
        filter,
        offset,
        limit,
        by_page,
        sort,
    })
}

fn bad_sort(attribute: &str, known: &str) -> Error {
    Error::invalid(
        "sortBy",
        format!("`{attribute}`: sort by {known}, `:asc` or `:desc`"),
    )
}

/// `POST /search/assets`.
#[utoipa::path(post, path = "/scenario/v1/search/assets", tag = "scenario", request_body = SearchRequest,
    params(("originalAssets" = Option<String>, Query), ("offset" = Option<String>, Query), ("limit" = Option<String>, Query)),
    responses((status = 200, body = SearchPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn assets(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<SearchQuery>,
    Json(body): Json<SearchRequest>,
) -> Result<axum::Json<SearchPage>, Failure> {
    use easel_store::assets::SearchOrder;
    let body = q.over(body)?;
    let p = plan(&body)?;
    let order = match p.sort.as_ref().map(|(a, d)| (a.as_str(), *d)) {
        None | Some(("createdAt", true)) => SearchOrder::CreatedDesc,
        Some(("createdAt", false)) => SearchOrder::CreatedAsc,
        Some(("updatedAt", true)) => SearchOrder::UpdatedDesc,
        Some(("updatedAt", false)) => SearchOrder::UpdatedAsc,
        Some((other, _)) => return Err(bad_sort(other, "`createdAt` or `updatedAt`").into()),
    };
    let mut f = easel_store::assets::AssetFilter {
        owner_id: who.user_id.clone(),
        text: p.text.clone(),
        with_public: body.public.unwrap_or(false),
        hidden: Some(false),
        limit: p.limit as u32,
        ..Default::default()
    };
    if let Some(expr) = &p.filter {
        if !apply_filter(&state, &who, expr, &mut f).await? {
            return Ok(axum::Json(page(Vec::new(), &p, 0)));
        }
    }
    let (rows, total) =
        easel_store::assets::search(&state.store.db, &f, order, p.offset as u32).await?;
    let hits = view::assets(&state, Some(&who.user_id), rows)
        .await?
        .into_iter()
        .map(|asset| SearchHit {
            team_id: asset.owner_id.clone(),
            asset,
            nsfw: Vec::new(),
        })
        .collect();
    Ok(axum::Json(page(hits, &p, total)))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioSearchModelHit)]
pub(super) struct ModelHit {
    /// With `ownerId`, `authorId` (`""` for the server's models) and `concepts` (`[]` but
    /// for compositions) always present.
    #[serde(flatten)]
    model: ModelView,
    /// No teams here: the owner (`""` for the server's models).
    team_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioSearchModels)]
pub(super) struct ModelSearchPage {
    hits: Vec<ModelHit>,
    #[serde(flatten)]
    counts: Counts,
}

/// `POST /search/models`: the server's models and the caller's own (`public: true`: also
/// every user's public models), by the database's text search over names, aliases,
/// family, tasks, tags and descriptions; `filter` over `privacy` (as each model shows it:
/// the server's are `public`), `tags` (any of), `type` and `capabilities` (any of).
#[utoipa::path(post, path = "/scenario/v1/search/models", tag = "scenario", request_body = SearchRequest,
    params(("originalModels" = Option<String>, Query), ("offset" = Option<String>, Query), ("limit" = Option<String>, Query)),
    responses((status = 200, body = ModelSearchPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn models(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<SearchQuery>,
    Json(body): Json<SearchRequest>,
) -> Result<axum::Json<ModelSearchPage>, Failure> {
    let body = q.over(body)?;
    let p = plan(&body)?;
    let mut found = super::models::listed(&state, &who, body.public == Some(true)).await?;
    if let Some(text) = &p.text {
        let ids: std::collections::HashSet<String> =
            easel_store::models::search(&state.store.db, text)
                .await?
                .into_iter()
                .collect();
        found.retain(|m| ids.contains(&m.id));
    }
    if let Some(expr) = &p.filter {
        for c in &parse_filter(expr)? {
            let any = |have: &[&str]| c.values.iter().any(|v| have.contains(&v.as_str()));
            match c.attribute.as_str() {
                // As for assets: one privacy, a known one; as each model shows it.
                "privacy" => {
                    let p = privacy_of(c)?;
                    found.retain(|m| view::model_privacy(m) == p.as_str());
                }
                "tags" => {
                    easel_core::asset::check_tags("filter", &c.values)?;
                    found.retain(|m| any(&m.tags.iter().map(String::as_str).collect::<Vec<_>>()))
                }
                "type" => found.retain(|m| any(&[view::model_type(m)])),
                "capabilities" => found.retain(|m| any(&view::capabilities(m))),
                other => {
                    return Err(bad_filter(format!(
                        "`{other}` cannot be filtered on for models (privacy, tags, type, \
                         capabilities)"
                    ))
                    .into())
                }
            }
        }
    }
    match p.sort.as_ref().map(|(a, d)| (a.as_str(), *d)) {
        None | Some(("name", false)) => found.sort_by(|a, b| a.name.cmp(&b.name)),
        Some(("name", true)) => found.sort_by(|a, b| b.name.cmp(&a.name)),
        Some(("createdAt", d)) => {
            found.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            if d {
                found.reverse();
            }
        }
        Some(("updatedAt", d)) => {
            found.sort_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.id.cmp(&b.id)));
            if d {
                found.reverse();
            }
        }
        Some((other, _)) => {
            return Err(bad_sort(other, "`name`, `createdAt` or `updatedAt`").into())
        }
    }
    let total = found.len() as u64;
    let page: Vec<Model> = found
        .into_iter()
        .skip(p.offset as usize)
        .take(p.limit as usize)
        .collect();
    let hits = super::models::views(&state, Some(&who), page)
        .await?
        .into_iter()
        .map(|mut model| {
            model.short_description.get_or_insert_with(String::new);
            let owner = model.owner_id.get_or_insert_with(String::new).clone();
            model.author_id.get_or_insert_with(String::new);
            model.concepts.get_or_insert_with(Vec::new);
            ModelHit {
                model,
                team_id: owner,
            }
        })
        .collect();
    Ok(axum::Json(ModelSearchPage {
        hits,
        counts: counts(&p, total),
    }))
}

fn page(hits: Vec<SearchHit>, p: &Plan, total: u64) -> SearchPage {
    SearchPage {
        hits,
        counts: counts(p, total),
    }
}

fn counts(p: &Plan, total: u64) -> Counts {
    Counts {
        offset: p.offset,
        limit: p.limit,
        page: p.by_page.then(|| p.offset / p.limit + 1),
        hits_per_page: p.by_page.then_some(p.limit),
        total_pages: p.by_page.then(|| total.div_ceil(p.limit)),
        total_hits: total,
        estimated_total_hits: total,
    }
}

/// One clause of a filter: an attribute and the values it may take (one for `=`).
#[derive(Debug, PartialEq)]
struct Clause {
    attribute: String,
    values: Vec<String>,
}

fn bad_filter(why: impl std::fmt::Display) -> Error {
    Error::invalid(
        "filter",
        format!(
            "{why}. Filters here are clauses joined by AND, each `attribute = value` or \
             `attribute IN [a, b]`"
        ),
    )
}

/// A token of a filter: a symbol of the syntax, a bare word (attributes, keywords, values) or
/// a quoted value.
#[derive(Debug, PartialEq)]
enum Token {
    Sym(char),
    Word(String),
    Quoted(String),
}

const SYMBOLS: &[char] = &['=', '[', ']', ','];
const REFUSED: &[char] = &['!', '<', '>', '(', ')'];

/// The tokens of a filter; operators other than `=` and `IN` are refused.
fn tokens(expr: &str) -> Result<Vec<Token>, Error> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(bad_filter("a quoted value is not closed")),
                    Some('\\') => s.extend(chars.next()),
                    Some(q) if q == c => break,
                    Some(x) => s.push(x),
                }
            }
            out.push(Token::Quoted(s));
        } else if SYMBOLS.contains(&c) {
            chars.next();
            out.push(Token::Sym(c));
        } else if REFUSED.contains(&c) {
            return Err(bad_filter(format!("`{c}` is not supported")));
        } else {
            let mut s = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || SYMBOLS.contains(&x) || REFUSED.contains(&x) {
                    break;
                }
                s.push(x);
                chars.next();
            }
            out.push(Token::Word(s));
        }
    }
    Ok(out)
}

/// The clauses of a filter expression, each attribute by its one name (`metadata.*` aliases
/// resolved) and at most once.
fn parse_filter(expr: &str) -> Result<Vec<Clause>, Error> {
    let mut clauses = parse_clauses(expr)?;
    let mut seen = std::collections::HashSet::new();
    for c in &mut clauses {
        c.attribute = attribute_name(&c.attribute).to_string();
        if !seen.insert(c.attribute.clone()) {
            return Err(bad_filter(format!("`{}` appears twice", c.attribute)));
        }
    }
    Ok(clauses)
}

/// A `privacy` clause's one value.
fn privacy_of(c: &Clause) -> Result<easel_core::asset::Privacy, Error> {
    let [v] = c.values.as_slice() else {
        return Err(bad_filter("`privacy` takes one value"));
    };
    easel_core::asset::Privacy::parse(v)
        .ok_or_else(|| bad_filter(format!("privacy `{v}`: private, unlisted or public")))
}

/// The clauses of a filter expression as written.
fn parse_clauses(expr: &str) -> Result<Vec<Clause>, Error> {
    let mut it = tokens(expr)?.into_iter();
    let mut clauses = Vec::new();
    let value = |t: Option<Token>, what: &str| match t {
        Some(Token::Word(s)) | Some(Token::Quoted(s)) if !s.is_empty() => Ok(s),
        _ => Err(bad_filter(format!("expected {what}"))),
    };
    loop {
        let attribute = match it.next() {
            Some(Token::Word(s)) => s,
            _ => return Err(bad_filter("expected an attribute")),
        };
        let values = match it.next() {
            Some(Token::Sym('=')) => vec![value(it.next(), "a value after `=`")?],
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("IN") => {
                if it.next() != Some(Token::Sym('[')) {
                    return Err(bad_filter("expected `[` after IN"));
                }
                let mut v = Vec::new();
                loop {
                    v.push(value(
                        it.next(),
                        "a value in the list (lists are not empty)",
                    )?);
                    match it.next() {
                        Some(Token::Sym(',')) => continue,
                        Some(Token::Sym(']')) => break,
                        _ => return Err(bad_filter("expected `,` or `]` in the list")),
                    }
                }
                v
            }
            Some(Token::Word(w)) => return Err(bad_filter(format!("`{w}` is not supported"))),
            _ => {
                return Err(bad_filter(format!(
                    "expected `=` or `IN` after `{attribute}`"
                )))
            }
        };
        clauses.push(Clause { attribute, values });
        match it.next() {
            None => return Ok(clauses),
            Some(Token::Word(k)) if k.eq_ignore_ascii_case("AND") => continue,
            Some(Token::Word(k)) | Some(Token::Quoted(k)) => {
                return Err(bad_filter(format!("`{k}` is not supported")))
            }
            Some(Token::Sym(c)) => return Err(bad_filter(format!("unexpected `{c}`"))),
        }
    }
}

/// The attribute a filter names, with the `metadata.` names of the same fields.
fn attribute_name(a: &str) -> &str {
    match a {
        "metadata.modelId" => "modelId",
        "metadata.parentId" => "parentAssetId",
        "metadata.parentJobId" => "inferenceId",
        other => other,
    }
}

/// Put a filter's clauses onto `f`; false when a clause can match nothing (an unknown model
/// or asset type).
async fn apply_filter(
    state: &AppState,
    who: &Principal,
    expr: &str,
    f: &mut easel_store::assets::AssetFilter,
) -> Result<bool, Error> {
    for c in parse_filter(expr)? {
        let attribute = c.attribute.as_str();
        let one = || match c.values.as_slice() {
            [v] => Ok(v.clone()),
            _ => Err(bad_filter(format!("`{attribute}` takes one value"))),
        };
        match attribute {
            "privacy" => f.privacy = Some(privacy_of(&c)?),
            "tags" => f.tags = easel_core::asset::check_tags("filter", &c.values)?,
            "collectionIds" => {
                let v = one()?;
                let id = ids::collection_in(&v)
                    .ok_or_else(|| bad_filter(format!("`{v}` is not a collection id")))?;
                f.collection_id = Some(service::owned_collection(state, who, &id).await?.id);
            }
            "type" => {
                f.tasks = c
                    .values
                    .iter()
                    .filter_map(|t| view::tasks_of_type(t))
                    .map(str::to_string)
                    .collect();
                if f.tasks.is_empty() {
                    return Ok(false);
                }
            }
            "modelId" => {
                let v = one()?;
                match service::find_model(state, Some(who), &ids::model_ref(&v)).await? {
                    Some(m) => f.model = Some(m.job_name().to_string()),
                    None => return Ok(false),
                }
            }
            "parentAssetId" => {
                let v = one()?;
                f.parent_id = Some(
                    ids::asset_in(&v)
                        .ok_or_else(|| bad_filter(format!("`{v}` is not an asset id")))?,
                );
            }
            "inferenceId" => f.job_id = Some(one()?),
            other => {
                return Err(bad_filter(format!(
                    "`{other}` cannot be filtered on (assets: privacy, tags, collectionIds, type, \
                     modelId, parentAssetId, inferenceId)"
                )))
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_the_supported_subset() {
        let c = parse_filter("privacy = public AND tags IN [fox, \"snow cat\"] and type='upscale'")
            .unwrap();
        assert_eq!(attribute_name("metadata.modelId"), "modelId");
        assert_eq!(attribute_name("metadata.privacy"), "metadata.privacy");
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            c,
            vec![
                Clause {
                    attribute: "privacy".into(),
                    values: v(&["public"])
                },
                Clause {
                    attribute: "tags".into(),
                    values: v(&["fox", "snow cat"])
                },
                Clause {
                    attribute: "type".into(),
                    values: v(&["upscale"])
                },
            ]
        );
        for bad in [
            "privacy = public OR tags = fox",
            "NOT privacy = public",
            "width > 5",
            "privacy != public",
            "tags IN [fox",
            "tags = \"fox",
            "(privacy = public)",
            "privacy =",
            "privacy public",
            "tags IN []",
            "tags IN [a \"]\"",
            "privacy \"=\" public",
            "privacy = public)",
            "privacy = \"\"",
        ] {
            let e = parse_filter(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("filter"), "{bad}");
        }
    }
}
