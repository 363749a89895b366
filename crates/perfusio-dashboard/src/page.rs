//! The HTML of the dashboard: one page, everything inline (styles, the SVG charts and a small
//! polling script), so it works offline. Every text from a file is escaped.

use std::fmt::Write as _;

use perfusio_core::{Control, DesignSpace, Species};
use perfusio_twin::campaign_files::{
    ActionKind, ActionOutcome, CampaignSnapshot, OperatorAction, ReactorSnapshot,
};

use crate::charts::{CHART_SPECIES, FanData, controls_of, fan_chart_svg, setpoint_history_svg};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let a = v.abs();
    if a != 0.0 && !(0.01..100_000.0).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#1f3b57;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
header h1{font-size:1.2em;margin:0}header a{color:#fff}header button{color:#fff;background:transparent;border:1px solid #fff;border-radius:3px;cursor:pointer}
main{padding:0 1em 2em}
section{background:#fff;border-radius:6px;margin:1em 0;padding:.6em 1em;box-shadow:0 1px 2px #0002}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:.15em .5em;text-align:right}
th{background:#eef}td.l,th.l{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:.5em}.charts figure{margin:0}.charts svg{max-width:100%;height:auto}
.flash{padding:.5em 1em;margin:1em;border-radius:4px}.ok{background:#dfd}.err{background:#fdd}
.alarm-critical{color:#a00;font-weight:bold}.alarm-warning{color:#a60}
.missing{color:#999}form{display:inline-block;margin:.2em .5em .2em 0}
fieldset{border:1px solid #ccc;margin:.3em 0}input[type=text]{width:6em}
.pending{border-left:4px solid #e90;padding-left:.6em}
.legend span{display:inline-block;margin-right:1em}
";

/// Polls `/version` and reloads the live part when it changed, unless the operator is typing.
pub(crate) const SCRIPT: &str = "
(function(){
  var live=document.getElementById('live'); if(!live) return;
  var dirty=false; live.addEventListener('input',function(){dirty=true;});
  live.addEventListener('submit',function(){dirty=false;});
  var status=document.getElementById('live-status');
  function count(){var n=0;document.querySelectorAll('svg.chart').forEach(function(s){var r=s.getBoundingClientRect();if(r.width>0&&r.height>0)n++;});document.body.setAttribute('data-charts-rendered',String(n));}
  count();
  function tick(){
    var x=new XMLHttpRequest(); x.open('GET','/version'); x.timeout=5000;
    x.onload=function(){
      if(x.status!==200){if(status)status.textContent='offline ('+x.status+')';return;}
      var v=x.responseText;
      if(v===live.getAttribute('data-version')){if(status)status.textContent='live';return;}
      var a=document.activeElement; if(dirty||(a&&live.contains(a)&&a.tagName!=='BUTTON')){if(status)status.textContent='update waiting (you are editing)';return;}
      var y=new XMLHttpRequest(); y.open('GET','/live');
      y.onload=function(){if(y.status===200){live.outerHTML=y.responseText;live=document.getElementById('live');live.addEventListener('input',function(){dirty=true;});live.addEventListener('submit',function(){dirty=false;});count();if(status)status.textContent='live';}};
      y.send();
    };
    x.onerror=function(){if(status)status.textContent='offline';};
    x.send();
  }
  setInterval(tick,2000);
})();
";

/// Who is looking at the page.
#[derive(Debug, Clone)]
pub(crate) struct Viewer<'a> {
    /// The logged-in user and the session's CSRF token.
    pub(crate) session: Option<(&'a str, &'a str)>,
    /// Whether anyone can log in at all.
    pub(crate) can_login: bool,
}

/// Everything the live part shows.
#[derive(Debug)]
pub(crate) struct LiveData<'a> {
    pub(crate) version: &'a str,
    pub(crate) snapshot: Result<Option<&'a CampaignSnapshot>, String>,
    pub(crate) actions: &'a [OperatorAction],
    pub(crate) outcomes: &'a [ActionOutcome],
    pub(crate) design_space: &'a DesignSpace,
}

/// The whole page.
pub(crate) fn page(
    title: &str,
    viewer: &Viewer<'_>,
    flash: Option<(bool, &str)>,
    live: &str,
) -> String {
    let mut h = String::with_capacity(live.len() + 8192);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    );
    h.push_str("<header><h1>perfusio dashboard</h1><span id=\"live-status\">live</span><span style=\"flex:1\"></span>");
    match viewer.session {
        Some((user, csrf)) => {
            let _ = write!(
                h,
                "<span>signed in as <b id=\"user\">{}</b></span>\
                 <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">log out</button></form>",
                escape(user),
                escape(csrf)
            );
        }
        None if viewer.can_login => h.push_str("<a href=\"/login\">log in to act</a>"),
        None => h.push_str("<span>read-only (no users file)</span>"),
    }
    h.push_str("</header>");
    if let Some((ok, text)) = flash {
        let _ = write!(
            h,
            "<div class=\"flash {}\" id=\"flash\">{}</div>",
            if ok { "ok" } else { "err" },
            escape(text)
        );
    }
    h.push_str(live);
    let _ = write!(h, "<script>{SCRIPT}</script>");
    h.push_str("</body></html>\n");
    h
}

/// The login page.
pub(crate) fn login_page(message: Option<&str>, can_login: bool) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>log in – perfusio dashboard</title>\
         <style>{STYLE}</style></head><body><header><h1>perfusio dashboard</h1><a href=\"/\">back to the dashboard</a></header><main><section>"
    );
    if let Some(m) = message {
        let _ = write!(h, "<p class=\"flash err\" id=\"flash\">{}</p>", escape(m));
    }
    if can_login {
        h.push_str(
            "<form method=\"post\" action=\"/login\"><p><label>user <input name=\"user\" autocomplete=\"username\" required maxlength=\"64\"></label></p>\
             <p><label>password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"1024\"></label></p>\
             <p><button type=\"submit\">log in</button></p></form>",
        );
    } else {
        h.push_str("<p>This dashboard is read-only: it was started without a users file.</p>");
    }
    h.push_str("</section></main></body></html>\n");
    h
}

/// The live part (`<main id="live">`), reloaded by the page's script when the files change.
pub(crate) fn live(data: &LiveData<'_>, viewer: &Viewer<'_>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<main id=\"live\" data-version=\"{}\">",
        escape(data.version)
    );
    match &data.snapshot {
        Err(e) => {
            let _ = write!(
                h,
                "<section class=\"flash err\">cannot read the campaign: {}</section>",
                escape(e)
            );
        }
        Ok(None) => h.push_str(
            "<section><p>Waiting for the campaign to publish <code>snapshot.json</code>.</p></section>",
        ),
        Ok(Some(s)) => snapshot_html(&mut h, s, data, viewer),
    }
    outcomes_html(&mut h, data);
    h.push_str("</main>");
    h
}

fn snapshot_html(h: &mut String, s: &CampaignSnapshot, data: &LiveData<'_>, viewer: &Viewer<'_>) {
    let _ = write!(
        h,
        "<section id=\"campaign\"><h2>campaign {}</h2><p>day <b>{}</b> · status <b>{}</b> · approval <b>{}</b> · objective <b>{}</b> · updated {}</p>",
        escape(&s.campaign),
        s.day,
        escape(&s.status),
        escape(&s.approval),
        escape(&s.objective),
        escape(&s.updated_at)
    );
    let _ = write!(
        h,
        "<p>reactors: {}</p>",
        s.reactors
            .iter()
            .map(|r| format!("<a href=\"#{0}\">{0}</a>", escape(&r.id)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    h.push_str("<h3>best point so far</h3>");
    match &s.best_point {
        None => h.push_str("<p id=\"best\" class=\"missing\">none yet</p>"),
        Some(b) => {
            let _ = write!(
                h,
                "<p id=\"best\">objective {} ± {}{}</p>",
                num(b.objective_mean),
                num(b.objective_sd),
                b.reactor
                    .as_ref()
                    .map(|r| format!(" (from {})", escape(r)))
                    .unwrap_or_default()
            );
            controls_table(h, &[("value", &b.controls)]);
        }
    }
    if !s.pareto_front.is_empty() {
        // several objectives: the front of the points found, one column per point
        h.push_str(
            "<h3>Pareto front so far</h3><table id=\"front\"><tr><th class=\"l\">objective</th>",
        );
        for i in 1..=s.pareto_front.len() {
            let _ = write!(h, "<th>P{i}</th>");
        }
        h.push_str("</tr>");
        let names: Vec<&String> = s.pareto_front[0]
            .objectives
            .iter()
            .map(|o| &o.name)
            .collect();
        for (k, name) in names.iter().enumerate() {
            let _ = write!(h, "<tr><td class=\"l\">{}</td>", escape(name));
            for p in &s.pareto_front {
                match p.objectives.get(k) {
                    Some(o) => {
                        let _ = write!(h, "<td>{} ± {}</td>", num(o.mean), num(o.sd));
                    }
                    None => h.push_str("<td class=\"missing\">—</td>"),
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        let cols: Vec<(String, &std::collections::BTreeMap<String, f64>)> = s
            .pareto_front
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("P{}", i + 1), &p.controls))
            .collect();
        let cols: Vec<(&str, &std::collections::BTreeMap<String, f64>)> =
            cols.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        controls_table(h, &cols);
    }
    h.push_str("<p class=\"legend\"><span>charts: shaded = forecast 90 % and 50 % bands of the state, blue line = median,</span><span>lightest = 90 % band of a sample (measurement noise included),</span><span>black dots = observations (a missing value is a gap, never a zero)</span></p></section>");
    for r in &s.reactors {
        reactor_html(h, r, s, data.design_space, viewer);
    }
}

fn controls_table(h: &mut String, cols: &[(&str, &std::collections::BTreeMap<String, f64>)]) {
    h.push_str("<table><tr><th class=\"l\">control</th>");
    for (name, _) in cols {
        let _ = write!(h, "<th>{}</th>", escape(name));
    }
    h.push_str("</tr>");
    let mut names: Vec<&String> = cols.iter().flat_map(|(_, m)| m.keys()).collect();
    names.sort_by_key(|n| Control::lookup(n).map_or(usize::MAX, Control::index));
    names.dedup();
    for n in names {
        let unit = Control::lookup(n).map(Control::unit).unwrap_or("");
        let _ = write!(
            h,
            "<tr><td class=\"l\">{} [{}]</td>",
            escape(n),
            escape(unit)
        );
        for (_, m) in cols {
            match m.get(n) {
                Some(v) => {
                    let _ = write!(h, "<td>{}</td>", num(*v));
                }
                None => h.push_str("<td class=\"missing\">—</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn hidden(h: &mut String, csrf: &str, kind: &str, reactor: &str, day: u32) {
    let _ = write!(
        h,
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"kind\" value=\"{kind}\">\
         <input type=\"hidden\" name=\"reactor\" value=\"{}\"><input type=\"hidden\" name=\"day\" value=\"{day}\">",
        escape(csrf),
        escape(reactor)
    );
}

fn reactor_html(
    h: &mut String,
    r: &ReactorSnapshot,
    s: &CampaignSnapshot,
    ds: &DesignSpace,
    viewer: &Viewer<'_>,
) {
    let id = escape(&r.id);
    let _ = write!(
        h,
        "<section class=\"reactor\" id=\"{id}\" data-reactor=\"{id}\"><h2>{id} <small>{}</small></h2>",
        escape(&r.connector)
    );
    // the latest sample
    match r.observations.last() {
        None => h.push_str("<p class=\"missing\">no sample yet</p>"),
        Some(o) => {
            let _ = write!(
                h,
                "<h3>latest sample, day {}</h3><table class=\"sample\"><tr>",
                o.day
            );
            let mut cols: Vec<(&String, &Option<f64>)> = o.values.iter().collect();
            cols.sort_by_key(|(k, _)| Species::lookup(k).map_or(usize::MAX, Species::index));
            for (k, _) in &cols {
                let unit = Species::lookup(k).map(Species::unit).unwrap_or("");
                let _ = write!(h, "<th>{} [{}]</th>", escape(k), escape(unit));
            }
            h.push_str("</tr><tr>");
            for (_, v) in &cols {
                match v {
                    Some(v) if v.is_finite() => {
                        let _ = write!(h, "<td>{}</td>", num(*v));
                    }
                    _ => h.push_str("<td class=\"missing\">missing</td>"),
                }
            }
            h.push_str("</tr></table>");
        }
    }
    // alarms
    if r.alarms.is_empty() {
        h.push_str("<p class=\"alarms missing\">no active alarms</p>");
    } else {
        h.push_str("<ul class=\"alarms\">");
        for a in &r.alarms {
            let _ = write!(
                h,
                "<li class=\"alarm-{}\">{} {}: {} (since day {})</li>",
                if a.severity == "critical" {
                    "critical"
                } else {
                    "warning"
                },
                escape(&a.severity),
                escape(&a.variable),
                escape(&a.message),
                a.since_day
            );
        }
        h.push_str("</ul>");
    }
    // the pending recommendation
    if let Some(p) = &r.pending {
        let _ = write!(
            h,
            "<div class=\"pending\" data-day=\"{}\"><h3>pending recommendation for day {}</h3>\
             <p>reason: {}</p><p>deadline <b>{}</b>{}; at the deadline: <b>{}</b></p>",
            p.day,
            p.day,
            escape(&p.reason),
            escape(&p.deadline),
            deadline_note(&p.deadline),
            escape(&p.at_deadline)
        );
        controls_table(h, &[("now", &p.current), ("recommended", &p.recommended)]);
        if let Some((_, csrf)) = viewer.session {
            h.push_str("<form method=\"post\" action=\"/action\" class=\"approve\">");
            hidden(h, csrf, "approve", &r.id, p.day);
            h.push_str("<button type=\"submit\">approve</button></form>");
            h.push_str("<form method=\"post\" action=\"/action\" class=\"reject\">");
            hidden(h, csrf, "reject", &r.id, p.day);
            h.push_str("<input type=\"text\" name=\"reason\" placeholder=\"reason\" maxlength=\"500\" style=\"width:14em\"> <button type=\"submit\">reject</button></form>");
            h.push_str("<details><summary>edit</summary><form method=\"post\" action=\"/action\" class=\"edit\">");
            hidden(h, csrf, "edit", &r.id, p.day);
            let rec = controls_of(&p.recommended);
            let cur = controls_of(&p.current);
            h.push_str("<p>Values that differ from the recommendation replace it; an empty field keeps it.</p>");
            for c in Control::ALL {
                let spec = ds.control(c);
                let v = rec
                    .get(&c)
                    .or_else(|| cur.get(&c))
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let _ = write!(
                    h,
                    "<label>{} [{}] ({}–{}) <input type=\"text\" name=\"c:{}\" value=\"{}\"></label> ",
                    c.name(),
                    c.unit(),
                    spec.lower,
                    spec.upper,
                    c.name(),
                    v
                );
            }
            h.push_str("<button type=\"submit\">apply edit</button></form></details>");
        } else {
            h.push_str("<p class=\"missing\">log in to approve, edit or reject</p>");
        }
        h.push_str("</div>");
    }
    // the charts
    h.push_str("<div class=\"charts\">");
    for sp in CHART_SPECIES {
        let d = FanData::from_reactor(r, sp);
        let _ = write!(
            h,
            "<figure data-species=\"{}\" data-observed=\"{}\" data-runs=\"{}\">",
            sp.name(),
            d.observed_count(),
            d.observed_runs.len()
        );
        match fan_chart_svg(&d, sp) {
            Ok(svg) => h.push_str(&svg),
            Err(e) => {
                let _ = write!(h, "<p class=\"err\">{}</p>", escape(&e.to_string()));
            }
        }
        h.push_str("</figure>");
    }
    match setpoint_history_svg(&r.setpoints, s.day, ds) {
        Ok(Some(svg)) => {
            let _ = write!(h, "<figure data-chart=\"setpoints\">{svg}</figure>");
        }
        Ok(None) => {}
        Err(e) => {
            let _ = write!(h, "<p class=\"err\">{}</p>", escape(&e.to_string()));
        }
    }
    h.push_str("</div>");
    // the setpoint history as a table
    if !r.setpoints.is_empty() {
        h.push_str("<details><summary>setpoint history</summary><table class=\"setpoints\"><tr><th>from day</th><th class=\"l\">source</th>");
        for c in Control::ALL {
            let _ = write!(h, "<th>{}</th>", c.name());
        }
        h.push_str("</tr>");
        for e in r.setpoints.iter().rev().take(200) {
            let vals = controls_of(&e.values);
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"l\">{}</td>",
                e.day,
                escape(&e.source)
            );
            for c in Control::ALL {
                match vals.get(&c) {
                    Some(v) => {
                        let _ = write!(h, "<td>{}</td>", num(*v));
                    }
                    None => h.push_str("<td class=\"missing\">—</td>"),
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></details>");
    }
    // manual interventions
    if let Some((_, csrf)) = viewer.session {
        let day = s.day;
        h.push_str("<details class=\"manual\"><summary>record a manual intervention</summary>");
        let _ = write!(
            h,
            "<fieldset><legend>glucose bolus</legend><form method=\"post\" action=\"/action\">"
        );
        hidden(h, csrf, "glucose_bolus", &r.id, day);
        h.push_str("<label>increase (mmol/L) <input type=\"text\" name=\"mmol_per_l\" required></label> <button type=\"submit\">record bolus</button></form></fieldset>");
        h.push_str(
            "<fieldset><legend>media exchange</legend><form method=\"post\" action=\"/action\">",
        );
        hidden(h, csrf, "media_exchange", &r.id, day);
        h.push_str("<label>fraction of the volume (0–1] <input type=\"text\" name=\"fraction\" required></label> <button type=\"submit\">record exchange</button></form></fieldset>");
        h.push_str(
            "<fieldset><legend>extra sample</legend><form method=\"post\" action=\"/action\">",
        );
        hidden(h, csrf, "extra_sample", &r.id, day);
        for sp in Species::ALL {
            let _ = write!(
                h,
                "<label>{} [{}] <input type=\"text\" name=\"s:{}\"></label> ",
                sp.name(),
                sp.unit(),
                sp.name()
            );
        }
        h.push_str("<button type=\"submit\">record sample</button></form></fieldset>");
        h.push_str(
            "<fieldset><legend>setpoint override</legend><form method=\"post\" action=\"/action\">",
        );
        hidden(h, csrf, "setpoint_override", &r.id, day);
        for c in Control::ALL {
            let spec = ds.control(c);
            let _ = write!(
                h,
                "<label>{} [{}] ({}–{}) <input type=\"text\" name=\"c:{}\"></label> ",
                c.name(),
                c.unit(),
                spec.lower,
                spec.upper,
                c.name()
            );
        }
        h.push_str("<button type=\"submit\">record override</button></form></fieldset></details>");
    }
    h.push_str("</section>");
}

/// How long until an RFC 3339 deadline, or that it has passed; empty when it does not parse.
fn deadline_note(deadline: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let Ok(t) = time::OffsetDateTime::parse(deadline, &Rfc3339) else {
        return String::new();
    };
    let left = t - time::OffsetDateTime::now_utc();
    if left.is_negative() {
        " <span class=\"alarm-warning\">(passed)</span>".into()
    } else {
        let m = left.whole_minutes();
        format!(" (in {} h {:02} min)", m / 60, m % 60)
    }
}

fn describe(kind: &ActionKind) -> String {
    let vals = |m: &std::collections::BTreeMap<String, f64>| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", num(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match kind {
        ActionKind::Approve => "approve".into(),
        ActionKind::Edit { values } => format!("edit {}", vals(values)),
        ActionKind::Reject { reason } => match reason {
            Some(r) => format!("reject ({r})"),
            None => "reject".into(),
        },
        ActionKind::GlucoseBolus { mmol_per_l } => {
            format!("glucose bolus +{} mmol/L", num(*mmol_per_l))
        }
        ActionKind::ExtraSample { values } => format!("extra sample {}", vals(values)),
        ActionKind::MediaExchange { fraction } => format!("media exchange {}", num(*fraction)),
        ActionKind::SetpointOverride { values } => format!("setpoint override {}", vals(values)),
    }
}

fn outcomes_html(h: &mut String, data: &LiveData<'_>) {
    h.push_str("<section id=\"outcomes\"><h2>operator actions and the campaign's answers</h2>");
    if data.actions.is_empty() && data.outcomes.is_empty() {
        h.push_str("<p class=\"missing\">no actions yet</p></section>");
        return;
    }
    h.push_str("<table><tr><th class=\"l\">when</th><th class=\"l\">who</th><th class=\"l\">reactor</th><th>day</th><th class=\"l\">action</th><th class=\"l\">answer</th><th class=\"l\">reason</th></tr>");
    for a in data.actions.iter().rev() {
        let answer = data.outcomes.iter().rev().find(|o| o.action == a.id);
        let (cls, verdict, reason) = match answer {
            Some(o) if o.accepted => ("ok", "accepted", o.reason.as_str()),
            Some(o) => ("err", "refused", o.reason.as_str()),
            None => ("", "waiting", ""),
        };
        let _ = write!(
            h,
            "<tr class=\"{cls}\" data-action=\"{}\"><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{verdict}</td><td class=\"l\">{}</td></tr>",
            escape(&a.id),
            escape(&a.at),
            escape(&a.actor),
            escape(&a.reactor),
            a.day,
            escape(&describe(&a.kind)),
            escape(reason)
        );
    }
    // answers to actions older than the shown ones
    for o in data
        .outcomes
        .iter()
        .rev()
        .filter(|o| !data.actions.iter().any(|a| a.id == o.action))
    {
        let _ = write!(
            h,
            "<tr class=\"{}\" data-action=\"{}\"><td class=\"l\">{}</td><td colspan=\"4\" class=\"l\">action {}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            if o.accepted { "ok" } else { "err" },
            escape(&o.action),
            escape(&o.at),
            escape(&o.action),
            if o.accepted { "accepted" } else { "refused" },
            escape(&o.reason)
        );
    }
    h.push_str("</table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_deadline_says_whether_it_passed() {
        assert!(deadline_note("2000-01-01T00:00:00Z").contains("passed"));
        assert!(deadline_note("2999-01-01T00:00:00Z").starts_with(" (in "));
        assert_eq!(deadline_note("tomorrow"), "");
    }

    #[test]
    fn numbers_are_short_and_missing_is_a_dash() {
        assert_eq!(num(1.23456), "1.235");
        assert_eq!(num(f64::NAN), "—");
        assert_eq!(num(1234.56), "1234.6");
    }
}
