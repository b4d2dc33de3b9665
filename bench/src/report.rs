//! Figures: a readable table and one JSON line per figure.

use std::io::Write;

#[derive(Clone, Debug)]
pub struct Figure {
    pub scenario: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    /// What the value is compared with (measured in the same run), if any.
    pub anchor: Option<String>,
    pub anchor_value: Option<f64>,
    /// value / anchor_value (or the figure's own definition of it).
    pub ratio: Option<f64>,
    /// Target, as text (e.g. ">= 0.8").
    pub target: Option<String>,
}

impl Figure {
    pub fn plain(scenario: &str, metric: &str, value: f64, unit: &str) -> Figure {
        Figure { scenario: scenario.into(), metric: metric.into(), value, unit: unit.into(), anchor: None, anchor_value: None, ratio: None, target: None }
    }

    pub fn vs(scenario: &str, metric: &str, value: f64, unit: &str, anchor: &str, anchor_value: f64, target: &str) -> Figure {
        let ratio = if anchor_value > 0.0 { Some(value / anchor_value) } else { None };
        Figure {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            anchor: Some(anchor.into()),
            anchor_value: Some(anchor_value),
            ratio,
            target: Some(target.into()),
        }
    }

    /// A figure compared with an anchor but with no target to meet.
    pub fn no_target(mut self) -> Figure {
        self.target = None;
        self
    }

    pub fn with_target(mut self, t: &str) -> Figure {
        self.target = Some(t.into());
        self
    }

    /// Whether the ratio (or value, without an anchor) meets a target of the
    /// form ">= x" or "<= x"; None when there is no target.
    pub fn met(&self) -> Option<bool> {
        let t = self.target.as_ref()?;
        let v = self.ratio.unwrap_or(self.value);
        let (op, num) = t.trim().split_at(2);
        let n: f64 = num.trim().parse().ok()?;
        match op {
            ">=" => Some(v >= n),
            "<=" => Some(v <= n),
            _ => None,
        }
    }

    pub fn json(&self) -> String {
        serde_json::json!({
            "scenario": self.scenario,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "anchor": self.anchor,
            "anchor_value": self.anchor_value,
            "ratio": self.ratio,
            "target": self.target,
        })
        .to_string()
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e9 {
        format!("{:.3}e9", v / 1e9)
    } else if v.abs() >= 1e6 {
        format!("{:.3}e6", v / 1e6)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Prints the table, then the JSON lines; appends the JSON lines to `out`.
pub fn print(figs: &[Figure], out: Option<&std::path::Path>) {
    println!();
    println!("{:<15} {:<42} {:>11} {:<9} {:<32} {:>11} {:>8} {:>8} {:>4}", "scenario", "metric", "value", "unit", "anchor", "anchor value", "ratio", "target", "met");
    for f in figs {
        println!(
            "{:<15} {:<42} {:>11} {:<9} {:<32} {:>11} {:>8} {:>8} {:>4}",
            f.scenario,
            f.metric,
            fmt_num(f.value),
            f.unit,
            f.anchor.clone().unwrap_or_default(),
            f.anchor_value.map(fmt_num).unwrap_or_default(),
            f.ratio.map(|r| format!("{r:.3}")).unwrap_or_default(),
            f.target.clone().unwrap_or_default(),
            match f.met() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            }
        );
    }
    println!();
    for f in figs {
        println!("{}", f.json());
    }
    if let Some(path) = out {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open results file");
        for f in figs {
            writeln!(file, "{}", f.json()).unwrap();
        }
    }
}
