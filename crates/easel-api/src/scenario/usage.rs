//! Usage and prices: `GET /usages` (points per day from the usage records; per model and
//! the activity list from the jobs that succeeded) and `GET /oscu/prices` (the operator's
//! `--credit-prices`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::*;

/// The longest custom range (the spec's).
const MAX_DAYS: i64 = 120;
/// The range without `startDate`/`endDate`/`timeRange`.
const DEFAULT_DAYS: i64 = 30;
/// Activity entries per answer (the spec's).
const ACTIVITY_PAGE: u32 = 100;
/// Jobs read for the per-model points of one answer, at most.
const MODEL_JOBS: u32 = 100_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsagesQuery {
    user_id: Option<String>,
    user_ids: Option<String>,
    activity_offset: Option<String>,
    #[serde(rename = "type")]
    usage_type: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    time_range: Option<String>,
    /// Read, not used: Easel has no projects.
    #[serde(rename = "projectIds")]
    _project_ids: Option<String>,
}

/// Scenario's usage name of a task.
fn usage_name(task: &str) -> &'static str {
    match task {
        "txt2img" | "img2img" | "inpaint" => "images-generation",
        "upscale" => "upscale",
        "pixelate" => "pixelate",
        _ => "custom",
    }
}

/// Scenario's activity `action` of a job's task.
fn action(task: &str) -> &str {
    match task {
        "txt2img" | "img2img" | "inpaint" | "upscale" | "pixelate" => task,
        _ => "custom",
    }
}

/// A date as the spec sends it (ISO 8601: a date, or a date and time).
fn date(field: &str, s: &str) -> Result<DateTime<Utc>, Error> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| Error::invalid(field, format!("`{s}` is not an ISO 8601 date")))
}

/// The range a query asks for: `startDate` + `endDate` (both, at most 120 days apart), else
/// `timeRange` (`<n>d`, `<n>h` or `<n>w`, at most 120 days), else the last 30 days.
fn range(q: &UsagesQuery, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), Error> {
    match (&q.start_date, &q.end_date) {
        (Some(s), Some(e)) => {
            let (start, end) = (date("startDate", s)?, date("endDate", e)?);
            if end <= start {
                return Err(Error::invalid("endDate", "must be after startDate"));
            }
            if end - start > Duration::days(MAX_DAYS) {
                return Err(Error::invalid(
                    "endDate",
                    format!("the range is at most {MAX_DAYS} days"),
                ));
            }
            Ok((start, end))
        }
        (Some(_), None) => Err(Error::invalid("endDate", "is required with startDate")),
        (None, Some(_)) => Err(Error::invalid("startDate", "is required with endDate")),
        (None, None) => {
            let span = match q
                .time_range
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                None => Duration::days(DEFAULT_DAYS),
                Some(r) => {
                    let bad = || {
                        Error::invalid(
                            "timeRange",
                            format!("`{r}` is not a range such as 24h, 7d or 4w (at most {MAX_DAYS} days)"),
                        )
                    };
                    let unit = r.chars().last().ok_or_else(bad)?;
                    let n: i64 = r[..r.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
                    let span = match unit {
                        'h' => Duration::hours(n.clamp(-1, 10_000)),
                        'd' => Duration::days(n.clamp(-1, 10_000)),
                        'w' => Duration::weeks(n.clamp(-1, 10_000)),
                        _ => return Err(bad()),
                    };
                    if n <= 0 || span > Duration::days(MAX_DAYS) {
                        return Err(bad());
                    }
                    span
                }
            };
            Ok((now - span, now))
        }
    }
}

/// The day (`YYYY-MM-DD`) of a time, and that day's start as the spec writes points.
fn day_start(day: &str) -> String {
    format!("{day}T00:00:00.000Z")
}

/// `GET /usages`: the caller's usage (admins: everyone's, or `userId`/`userIds`'), one point
/// per day (`granularity: 1d`): `usages` by usage name (`images-generation`, `upscale`,
/// `pixelate`, `creative-unit-cost`) from the usage records; `modelUsages` (credits and jobs
/// per model and day) and `activity` (succeeded jobs, newest first, 100 per page from
/// `activityOffset`) from the jobs; `consumption` per user; `entities.models`. `type`
/// narrows the sections (`usages`, `modelUsages`, `activity`, `consumption`); unknown
/// values are ignored, as the spec says.
#[utoipa::path(get, path = "/scenario/v1/usages", tag = "scenario", params(("startDate" = Option<String>, Query), ("endDate" = Option<String>, Query), ("timeRange" = Option<String>, Query), ("type" = Option<String>, Query), ("userId" = Option<String>, Query), ("userIds" = Option<String>, Query), ("activityOffset" = Option<String>, Query)), responses((status = 200, description = "`{usages, modelUsages, activity, consumption, entities}`"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn usages(
    State(state): State<AppState>,
    Auth(who): Auth,
    ListQuery(q): ListQuery<UsagesQuery>,
) -> Result<axum::Json<Value>, Failure> {
    let (start, end) = range(&q, Utc::now())?;
    let mut users = query::list_param(q.user_ids.as_deref());
    users.extend(q.user_id.clone());
    if !who.is_admin() && users.iter().any(|u| *u != who.user_id) {
        return Err(
            Error::new(ErrorKind::Forbidden, "you may read only your own usage")
                .with_field(if q.user_id.is_some() {
                    "userId"
                } else {
                    "userIds"
                })
                .into(),
        );
    }
    if users.is_empty() && !who.is_admin() {
        users.push(who.user_id.clone());
    }
    let offset = q
        .activity_offset
        .as_deref()
        .and_then(|o| o.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let asked = query::list_param(q.usage_type.as_deref());
    let known = ["usages", "modelUsages", "activity", "consumption"];
    let mut wanted: Vec<&str> = known
        .into_iter()
        .filter(|k| asked.iter().any(|a| a == k))
        .collect();
    if wanted.is_empty() {
        // "If bad type or empty, all types will be returned."
        wanted = known.to_vec();
    }
    let db = &state.store.db;
    let (from_day, to_day) = (
        start.format("%Y-%m-%d").to_string(),
        end.format("%Y-%m-%d").to_string(),
    );
    let in_range = |day: &str| day >= from_day.as_str() && day <= to_day.as_str();
    let of_user = |u: &str| users.is_empty() || users.iter().any(|x| x == u);

    // Daily points by usage name, and credits per user, from the usage records.
    let single = match users.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let rows = easel_store::usage::list(db, single, Some(&from_day)).await?;
    let mut by_name: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();
    let mut per_user: BTreeMap<String, f64> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| in_range(&r.day) && of_user(&r.owner_id))
    {
        let credits = easel_core::usage::credits(r.units) as f64;
        *by_name
            .entry(usage_name(&r.task))
            .or_default()
            .entry(r.day.clone())
            .or_default() += r.outputs as f64;
        *by_name
            .entry("creative-unit-cost")
            .or_default()
            .entry(r.day.clone())
            .or_default() += credits;
        *per_user.entry(r.owner_id.clone()).or_default() += credits;
    }
    let usages: Vec<Value> = by_name
        .into_iter()
        .map(|(name, days)| {
            json!({"usageName": name, "granularity": "1d", "points": days.into_iter()
                .map(|(d, v)| json!({"time": day_start(&d), "value": v.to_string()}))
                .collect::<Vec<_>>()})
        })
        .collect();
    let mut consumption: Vec<(String, f64)> = per_user.into_iter().collect();
    consumption.sort_by(|a, b| b.1.total_cmp(&a.1));

    // Per model and day, and the activity list, from the jobs.
    let (from_ms, to_ms) = (start.timestamp_millis(), end.timestamp_millis());
    let done =
        easel_store::jobs::succeeded_between(db, single, from_ms, to_ms, 0, MODEL_JOBS).await?;
    let mut per_model: BTreeMap<String, BTreeMap<String, (f64, u64)>> = BTreeMap::new();
    for j in done.iter().filter(|j| of_user(&j.owner_id)) {
        let (Some(model), Some(at)) = (&j.model, j.completed_at) else {
            continue;
        };
        let day = at.format("%Y-%m-%d").to_string();
        let point = per_model
            .entry(model.clone())
            .or_default()
            .entry(day)
            .or_default();
        point.0 += easel_core::usage::credits(j.usage_units) as f64;
        point.1 += 1;
    }
    let mut models = Vec::new();
    let mut model_usages = Vec::new();
    for (name, days) in per_model {
        // A model the caller may no longer see (another user's private one) shows its id.
        let id = match service::find_model(&state, Some(&who), &name).await? {
            Some(m) => {
                let id = ids::model(&m.id);
                models.push(json!({"id": id, "name": m.name}));
                id
            }
            None => ids::model(&name),
        };
        model_usages.push(json!({"modelId": id, "points": days.into_iter()
            .map(|(d, (cost, jobs))| json!({"time": day_start(&d), "cost": cost, "jobs": jobs, "discount": 0}))
            .collect::<Vec<_>>()}));
    }
    let activity: Vec<Value> = done
        .iter()
        .filter(|j| of_user(&j.owner_id))
        .skip(offset as usize)
        .take(ACTIVITY_PAGE as usize)
        .map(|j| {
            let mut data = json!({"jobId": j.id, "isApiKey": true});
            if let Some(m) = &j.model {
                data["modelId"] = json!(ids::model(m));
            }
            json!({
                "action": action(&j.task),
                "time": ids::time(&j.completed_at.unwrap_or(j.created_at)),
                "userId": j.owner_id,
                "projectId": "",
                "creativeUnitsCost": easel_core::usage::credits(j.usage_units),
                "data": data,
            })
        })
        .collect();

    let mut out = Map::new();
    if wanted.contains(&"usages") {
        out.insert("usages".into(), json!(usages));
    }
    if wanted.contains(&"modelUsages") {
        out.insert("modelUsages".into(), json!(model_usages));
        out.insert("entities".into(), json!({"models": models}));
    }
    if wanted.contains(&"activity") {
        out.insert("activity".into(), json!(activity));
    }
    if wanted.contains(&"consumption") {
        out.insert(
            "consumption".into(),
            json!(consumption
                .into_iter()
                .map(|(u, v)| json!({"userId": u, "value": v}))
                .collect::<Vec<_>>()),
        );
    }
    Ok(axum::Json(Value::Object(out)))
}

/// `GET /oscu/prices` (public): the operator's prepaid credit prices (`--credit-prices`),
/// `{prices: [{creativeUnits, unitAmount, currency}]}`; empty when none are set.
#[utoipa::path(get, path = "/scenario/v1/oscu/prices", tag = "scenario", responses((status = 200, description = "`{prices: [{creativeUnits, unitAmount, currency}]}`")))]
pub(super) async fn prices(State(state): State<AppState>) -> axum::Json<Value> {
    let prices: Vec<Value> = state
        .credit_prices
        .iter()
        .map(
            |p| json!({"creativeUnits": p.credits, "unitAmount": p.amount, "currency": p.currency}),
        )
        .collect();
    axum::Json(json!({"prices": prices}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(start: Option<&str>, end: Option<&str>, range: Option<&str>) -> UsagesQuery {
        UsagesQuery {
            user_id: None,
            user_ids: None,
            activity_offset: None,
            usage_type: None,
            start_date: start.map(str::to_string),
            end_date: end.map(str::to_string),
            time_range: range.map(str::to_string),
            _project_ids: None,
        }
    }

    #[test]
    fn ranges_follow_the_spec() {
        let now = date("x", "2026-12-06T12:00:00Z").unwrap();
        let (s, e) = range(&q(None, None, None), now).unwrap();
        assert_eq!((e - s).num_days(), 30);
        let (s, _) = range(&q(None, None, Some("7d")), now).unwrap();
        assert_eq!(ids::time(&s), "2026-11-29T12:00:00.000Z");
        let (s, e) = range(
            &q(Some("2026-01-01"), Some("2026-02-01T00:00:00Z"), Some("1d")),
            now,
        )
        .unwrap();
        assert_eq!((e - s).num_days(), 31, "dates win over timeRange");
        for (bad, field) in [
            (q(Some("2026-01-01"), None, None), "endDate"),
            (q(None, Some("2026-01-01"), None), "startDate"),
            (q(Some("2026-01-01"), Some("2026-06-01"), None), "endDate"),
            (q(Some("2026-02-01"), Some("2026-01-01"), None), "endDate"),
            (q(Some("yesterday"), Some("2026-01-01"), None), "startDate"),
            (q(None, None, Some("200d")), "timeRange"),
            (q(None, None, Some("7y")), "timeRange"),
            (q(None, None, Some("-1d")), "timeRange"),
        ] {
            assert_eq!(range(&bad, now).unwrap_err().field.as_deref(), Some(field));
        }
    }
}
