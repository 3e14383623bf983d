//! The transition table, written out as data and compared with the rust-fsm machine.

use redis_fsm::{
    is_noop, phase_machine, render, transition, DiagramFormat, Input, Phase, UnknownDiagramFormat,
};
use rust_fsm::StateMachineImpl;

use Input::*;
use Phase::*;

/// The inputs in the order of the columns below.
const COLUMNS: [Input; 13] = [
    DeletionRequested,
    SpecInvalid,
    ChildMissing,
    ChildrenCreated,
    ChangeApplied,
    ManualInterventionNeeded,
    FailingOver,
    StatefulSetNotObserved,
    PodsFailing,
    RolloutProgressing,
    NoReplicasReady,
    AllReplicasReady,
    PartiallyReady,
];

/// Every `(phase, input)` pair and the phase it leads to.
#[rustfmt::skip]
const EXPECTED: [(Phase, [Phase; 13]); 7] = [
    //           Deletion    SpecInv  ChildMiss ChildrenCr ChangeApp Manual  FailOver  StsNotObs PodsFail RolloutPr NoReady  AllReady  Partial
    (Unknown,    [Terminated, Failed,  Failed,   Creating,  Updating, Failed, Updating, Creating, Failed,  Updating, Pending, Running, Pending]),
    (Creating,   [Terminated, Failed,  Failed,   Creating,  Updating, Failed, Updating, Creating, Failed,  Creating, Pending, Running, Pending]),
    (Pending,    [Terminated, Failed,  Failed,   Updating,  Updating, Failed, Updating, Pending,  Failed,  Updating, Pending, Running, Pending]),
    (Running,    [Terminated, Failed,  Failed,   Updating,  Updating, Failed, Updating, Pending,  Failed,  Updating, Pending, Running, Pending]),
    (Updating,   [Terminated, Failed,  Failed,   Updating,  Updating, Failed, Updating, Updating, Failed,  Updating, Pending, Running, Updating]),
    (Failed,     [Terminated, Failed,  Failed,   Creating,  Updating, Failed, Updating, Creating, Failed,  Updating, Pending, Running, Pending]),
    (Terminated, [Terminated, Terminated, Terminated, Terminated, Terminated, Terminated, Terminated, Terminated, Terminated, Terminated, Terminated, Terminated, Terminated]),
];

#[test]
fn columns_and_rows_cover_every_input_and_phase() {
    assert_eq!(COLUMNS, Input::ALL);
    let rows: Vec<Phase> = EXPECTED.iter().map(|(phase, _)| *phase).collect();
    assert_eq!(rows, Phase::ALL);
}

#[test]
fn machine_matches_the_written_table() {
    for (from, row) in EXPECTED {
        for (input, expected) in COLUMNS.into_iter().zip(row) {
            assert_eq!(
                transition(from, input),
                Some(expected),
                "({from}, {input}) should lead to {expected}"
            );
        }
    }
}

#[test]
fn wrapper_is_the_rust_fsm_transition_function() {
    for from in Phase::ALL {
        for input in Input::ALL {
            assert_eq!(
                transition(from, input),
                phase_machine::Impl::transition(&from, &input)
            );
        }
    }
    assert_eq!(phase_machine::Impl::INITIAL_STATE, Phase::Unknown);
}

#[test]
fn every_target_is_a_fixed_point_of_its_input() {
    // This is what makes `step` idempotent on a repeated observation.
    for from in Phase::ALL {
        for input in Input::ALL {
            let to = transition(from, input).unwrap();
            assert!(
                is_noop(to, input),
                "({from}, {input}) -> {to}, but ({to}, {input}) moves on"
            );
        }
    }
}

#[test]
fn only_all_replicas_ready_leads_to_running() {
    for from in Phase::ALL {
        for input in Input::ALL {
            if transition(from, input) == Some(Running) {
                assert_eq!(input, AllReplicasReady, "({from}, {input}) -> Running");
            }
        }
    }
}

#[test]
fn nothing_leads_back_to_unknown() {
    for from in Phase::ALL {
        for input in Input::ALL {
            assert_ne!(transition(from, input), Some(Unknown));
        }
    }
}

#[test]
fn failed_recovers_on_every_input_that_is_not_a_failure() {
    let failures = [
        SpecInvalid,
        ChildMissing,
        ManualInterventionNeeded,
        PodsFailing,
    ];
    for input in Input::ALL {
        assert_eq!(is_noop(Failed, input), failures.contains(&input), "{input}");
    }
}

#[test]
fn diagrams_list_every_move_and_no_noop() {
    let mermaid = render(DiagramFormat::Mermaid);
    let dot = render(DiagramFormat::Dot);
    assert!(mermaid.starts_with("stateDiagram-v2\n"));
    assert!(dot.starts_with("digraph "));
    for from in Phase::ALL {
        assert!(!mermaid.contains(&format!("    {from} --> {from}:")));
        assert!(!dot.contains(&format!("    {from} -> {from} ")));
        for input in Input::ALL {
            let to = transition(from, input).unwrap();
            if to != from {
                let edge = mermaid
                    .lines()
                    .find(|line| line.starts_with(&format!("    {from} --> {to}: ")))
                    .unwrap_or_else(|| panic!("no mermaid edge {from} -> {to}"));
                assert!(edge
                    .split(": ")
                    .nth(1)
                    .unwrap()
                    .split(", ")
                    .any(|i| i == input.as_str()));
            }
        }
    }
    let markdown = render(DiagramFormat::Markdown);
    assert_eq!(markdown.lines().count(), 2 + Phase::ALL.len());
    assert!(!markdown.contains("(none)"));
}

#[test]
fn diagram_format_parses_known_names_only() {
    assert_eq!("mermaid".parse(), Ok(DiagramFormat::Mermaid));
    assert_eq!("dot".parse(), Ok(DiagramFormat::Dot));
    assert_eq!("markdown".parse(), Ok(DiagramFormat::Markdown));
    let error = "svg".parse::<DiagramFormat>().unwrap_err();
    assert_eq!(error, UnknownDiagramFormat("svg".into()));
    assert_eq!(
        error.to_string(),
        "unknown diagram format \"svg\": expected one of mermaid, dot, markdown"
    );
}

#[test]
fn phase_names_match_their_serde_names() {
    for phase in Phase::ALL {
        assert_eq!(phase.to_string(), phase.as_str());
        assert_eq!(
            serde_json::to_string(&phase).unwrap(),
            format!("\"{}\"", phase.as_str())
        );
        assert_eq!(
            serde_json::from_str::<Phase>(&format!("\"{phase}\"")).unwrap(),
            phase
        );
    }
    assert_eq!(Phase::default(), Unknown);
}
