//! `[console]`: the operator console's sessions and logins (docs/CONSOLE.md).

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// `[console]`: how long sessions last and when failed logins lock an account.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A session unused this many minutes ends (default 30).
    pub session_idle_minutes: Option<u64>,
    /// A session ends this many hours after login (default 12).
    pub session_max_hours: Option<u64>,
    /// Failed logins in a row that lock an account (default 5)...
    pub max_failed_logins: Option<u32>,
    /// ...for this many minutes (default 15).
    pub lockout_minutes: Option<u64>,
}

impl ConsoleConfig {
    pub(super) fn resolve(&self) -> anyhow::Result<ebb_app::operators::ConsoleSettings> {
        let d = ebb_app::operators::ConsoleSettings::default();
        let minutes = |v: Option<u64>, name: &str, default: Duration| -> anyhow::Result<Duration> {
            match v {
                None => Ok(default),
                Some(0) => bail!("[console] {name} must be at least 1"),
                Some(m) => Ok(Duration::from_secs(m.saturating_mul(60))),
            }
        };
        Ok(ebb_app::operators::ConsoleSettings {
            session_idle: minutes(self.session_idle_minutes, "session_idle_minutes", d.session_idle)?,
            session_max: minutes(
                self.session_max_hours.map(|h| h.saturating_mul(60)),
                "session_max_hours",
                d.session_max,
            )?,
            max_failed_logins: match self.max_failed_logins {
                Some(0) => bail!("[console] max_failed_logins must be at least 1"),
                Some(n) => n as i64,
                None => d.max_failed_logins,
            },
            lockout: minutes(self.lockout_minutes, "lockout_minutes", d.lockout)?,
            setup_ttl: d.setup_ttl,
            dev_notice: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_settings_read_minutes_and_hours_and_refuse_zero() {
        let c: ConsoleConfig =
            toml::from_str("session_idle_minutes = 5\nsession_max_hours = 2\nmax_failed_logins = 3").unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(
            (s.session_idle, s.session_max, s.max_failed_logins),
            (Duration::from_secs(300), Duration::from_secs(7200), 3)
        );
        assert_eq!(s.lockout, Duration::from_secs(15 * 60), "unset keeps the default");
        for bad in ["session_idle_minutes = 0", "max_failed_logins = 0", "lockout_minutes = 0"] {
            let c: ConsoleConfig = toml::from_str(bad).unwrap();
            assert!(c.resolve().is_err(), "{bad}");
        }
        assert!(toml::from_str::<ConsoleConfig>("session_minutes = 5").is_err(), "unknown keys are refused");
    }
}
