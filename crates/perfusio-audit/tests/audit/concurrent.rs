//! Many tasks logging through clones of one handle.

use std::collections::BTreeMap;

use perfusio_audit::event::Custom;
use perfusio_audit::{
    AuditHandle, AuditWriter, Entry, Event, FsyncPolicy, VerifyOptions, WriterOptions,
    read_verified, verify_file,
};
use serde_json::json;

#[test]
fn eight_tasks_produce_one_valid_chain_without_losses() {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 250;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = WriterOptions::new("conc", "R1")
        .fsync(FsyncPolicy::EveryN(std::num::NonZeroU32::new(16).unwrap()));
    let (writer, _) = AuditWriter::open(&path, opts).unwrap();
    let (handle, thread) = AuditHandle::spawn_with_thread(writer).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let seqs = rt.block_on(async {
        let mut joins = Vec::new();
        for t in 0..TASKS {
            let h = handle.clone();
            joins.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..PER_TASK {
                    let e = Event::Custom(Custom {
                        name: "tick".into(),
                        data: json!({"task": t, "i": i}),
                    });
                    seqs.push(
                        h.append(Entry::new(2, e).reactor(format!("R{t}")))
                            .await
                            .unwrap()
                            .seq,
                    );
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for j in joins {
            all.push(j.await.unwrap());
        }
        all
    });
    drop(handle);
    let head = thread.join().unwrap().unwrap();
    assert_eq!(head.seq, TASKS * PER_TASK);
    // Each task saw strictly increasing sequence numbers.
    for s in &seqs {
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
    let report = verify_file(
        &path,
        &VerifyOptions {
            expect_head: Some(head.hash),
        },
    )
    .unwrap();
    assert_eq!(report.records, TASKS * PER_TASK);
    let (_, recs) = read_verified(&path).unwrap();
    let mut per_task: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for r in &recs {
        let t = r.payload["data"]["task"].as_u64().unwrap();
        assert_eq!(r.reactor_id, format!("R{t}"));
        per_task
            .entry(t)
            .or_default()
            .push(r.payload["data"]["i"].as_u64().unwrap());
    }
    assert_eq!(per_task.len() as u64, TASKS);
    for (t, is) in per_task {
        assert_eq!(
            is,
            (0..PER_TASK).collect::<Vec<_>>(),
            "task {t} lost or reordered records"
        );
    }
}

#[test]
fn closed_handle_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _) =
        AuditWriter::open(dir.path().join("a.jsonl"), WriterOptions::new("r", "R1")).unwrap();
    let handle = AuditHandle::spawn(writer).unwrap();
    let other = handle.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        other.sync().await.unwrap();
        let head = handle.close().await.unwrap();
        assert_eq!(head.seq, 0);
        let e = Event::Custom(Custom {
            name: "late".into(),
            data: json!(null),
        });
        assert!(matches!(
            other.append(Entry::new(0, e)).await,
            Err(perfusio_audit::AuditError::WriterClosed)
        ));
    });
}
