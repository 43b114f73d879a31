import PlaneCore

/// The last line of "one process per lock": a drone's lease renewal that lists its backends
/// is told to stop every one that holds a lock whose confirmed holder is another backend.
/// However a second copy came about (a spawn answered too late, a lock taken over while its
/// confirmation was lost in a NATS node's failure), the lock table names one holder and the
/// others end at their drone's next listing (every tenth renewal, and after each spawn).
/// A lock with no record, or one not yet confirmed, stops nothing: its placement is still
/// being decided, and the scheduler's own checks cover that time.
enum SupersededLockHolders {
    /// Most lock records read for one renewal (a drone with more locked backends has the
    /// rest checked at its later listings: the list is in a different order each time).
    static let maximumChecked = 1000

    static func find(among ids: [BackendID], excluding ended: [EndedBackend], directory: BackendDirectory, store: ControllerStore) async -> [EndedBackend] {
        let alreadyEnded = Set(ended.map(\.backend))
        var checked = 0
        var superseded: [EndedBackend] = []
        for id in ids.shuffled() where !alreadyEnded.contains(id) {
            guard let record = directory.record(of: id), record.isLive, let lock = record.lock else { continue }
            guard checked < maximumChecked else { break }
            checked += 1
            guard let (holder, _) = try? await store.lock(LockRecord.key(cluster: record.cluster, lock: lock)),
                  holder.confirmed, holder.backendID != id else { continue }
            superseded.append(EndedBackend(backend: id, state: .lost))
        }
        return superseded
    }
}
