//! The rise/fall state machine of one real server (keepalived's): `fall` consecutive failed
//! checks take an up server down, `rise` consecutive good ones bring a down server back. A
//! check that could not run for a reason of the box's own ([`Outcome::Local`]) counts for
//! neither: the streak stays where it was.

use super::local::LocalFault;

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered as expected.
    Ok,
    /// It did not; the reason as an operator reads it (`timeout after 1s`, `connection
    /// refused`, `HTTP 503, expected 200`).
    Failed(String),
    /// It could not run: the box's own fault, nothing is known about the server.
    Local(LocalFault),
}

/// One real server's health.
#[derive(Debug, Clone)]
pub struct Machine {
    up: bool,
    rise: u32,
    fall: u32,
    /// Consecutive outcomes that disagree with the current state.
    streak: u32,
    /// Down by keepalived's `alpha` (never checked yet): the first good check brings it up.
    until_first_ok: bool,
}

/// What a check changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The state stays.
    Same,
    /// The server goes down, for this reason (the last failure).
    Down(String),
    /// The server comes back.
    Up,
}

impl Machine {
    /// A machine starting in `up`.
    pub fn new(up: bool, rise: u32, fall: u32) -> Self {
        Machine {
            up,
            rise: rise.max(1),
            fall: fall.max(1),
            streak: 0,
            until_first_ok: false,
        }
    }

    /// A machine down by keepalived's `alpha`: down until its first good check (failed checks
    /// before it keep it down), then `rise`/`fall` as usual.
    pub fn down_until_first_ok(rise: u32, fall: u32) -> Self {
        Machine {
            until_first_ok: true,
            ..Machine::new(false, rise, fall)
        }
    }

    /// Whether the server is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Consecutive checks that disagree with the current state so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Feed one check's outcome.
    pub fn feed(&mut self, outcome: &Outcome) -> Step {
        let failure = match outcome {
            Outcome::Ok => None,
            Outcome::Failed(why) => Some(why),
            Outcome::Local(_) => return Step::Same,
        };
        if self.until_first_ok && failure.is_none() {
            self.until_first_ok = false;
            self.streak = 0;
            self.up = true;
            return Step::Up;
        }
        if failure.is_none() == self.up {
            self.streak = 0;
            return Step::Same;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak < needed {
            return Step::Same;
        }
        self.streak = 0;
        self.up = !self.up;
        match failure {
            Some(why) => Step::Down(why.clone()),
            None => Step::Up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_keeps_a_server_down_until_its_first_good_check_then_rise_and_fall() {
        let mut m = Machine::down_until_first_ok(3, 2);
        assert!(!m.is_up());
        let bad = Outcome::Failed("connection refused".into());
        assert_eq!(m.feed(&bad), Step::Same);
        assert_eq!(m.feed(&bad), Step::Same);
        assert!(!m.is_up(), "failures keep it down");
        assert_eq!(
            m.feed(&Outcome::Ok),
            Step::Up,
            "one good check, not rise (3)"
        );
        assert_eq!(m.feed(&bad), Step::Same);
        assert_eq!(m.feed(&bad), Step::Down("connection refused".into()));
        for _ in 0..2 {
            assert_eq!(m.feed(&Outcome::Ok), Step::Same, "now rise applies");
        }
        assert_eq!(m.feed(&Outcome::Ok), Step::Up);
    }

    fn fail() -> Outcome {
        Outcome::Failed("connection refused".into())
    }

    #[test]
    fn fall_then_rise() {
        let mut m = Machine::new(true, 2, 3);
        assert_eq!(m.feed(&fail()), Step::Same);
        assert_eq!(m.feed(&fail()), Step::Same);
        assert_eq!(
            m.feed(&Outcome::Ok),
            Step::Same,
            "a success resets the streak"
        );
        assert_eq!(m.feed(&fail()), Step::Same);
        assert_eq!(m.feed(&fail()), Step::Same);
        assert_eq!(m.feed(&fail()), Step::Down("connection refused".into()));
        assert!(!m.is_up());
        assert_eq!(m.feed(&fail()), Step::Same);
        assert_eq!(m.feed(&Outcome::Ok), Step::Same);
        assert_eq!(m.feed(&Outcome::Ok), Step::Up);
        assert!(m.is_up());
    }

    #[test]
    fn a_local_fault_counts_for_neither_side() {
        let local = Outcome::Local(LocalFault {
            class: crate::health::local::FaultClass::Descriptors,
            detail: "Too many open files (os error 24)".into(),
        });
        let mut m = Machine::new(true, 1, 2);
        assert_eq!(m.feed(&fail()), Step::Same);
        for _ in 0..10 {
            assert_eq!(m.feed(&local), Step::Same);
        }
        assert!(m.is_up() && m.streak() == 1, "the failure streak is kept");
        assert_eq!(m.feed(&fail()), Step::Down("connection refused".into()));
        for _ in 0..10 {
            assert_eq!(m.feed(&local), Step::Same);
        }
        assert!(!m.is_up(), "a local fault brings nobody up either");
    }

    #[test]
    fn rise_and_fall_of_one_act_at_once() {
        let mut m = Machine::new(false, 1, 1);
        assert_eq!(m.feed(&Outcome::Ok), Step::Up);
        assert_eq!(m.feed(&fail()), Step::Down("connection refused".into()));
    }
}
