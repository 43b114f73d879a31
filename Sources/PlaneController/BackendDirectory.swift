import Logging
import NATS
import PlaneCore
import Synchronization

/// Every controller's in-memory copy of `plane_backends`, kept current by a KV watch:
/// answers "is backend X live, and where" without a round trip, and feeds metrics, the
/// HTTP status routes and the lost-backend sweep.
public final class BackendDirectory: Sendable {
    private let records = Mutex<[BackendID: BackendRecord]>([:])
    private let caughtUp = Mutex(false)

    public init() {}

    public func record(of backend: BackendID) -> BackendRecord? { records.withLock { $0[backend] } }

    public var all: [BackendRecord] { records.withLock { Array($0.values) } }

    public var isCaughtUp: Bool { caughtUp.withLock { $0 } }

    /// Backends per state (`Scheduling` for those without a reported state yet).
    public var countsByState: [String: Int] {
        records.withLock { records in
            var counts: [String: Int] = [:]
            for record in records.values { counts[record.state?.rawValue ?? "Scheduling", default: 0] += 1 }
            return counts
        }
    }

    /// The backends of `ids` that have ended, with their terminal state (for a drone that
    /// reconciles after an absence). Empty until the watch has caught up; at most
    /// `maximumReconciled` ids are looked at.
    ///
    /// A live backend the cluster placed on another drone than `drone` is ended for `drone`
    /// too (`Lost`): its copy there is one the scheduler gave up on (the drone answered the
    /// spawn too late) and must not run beside the placed one.
    public func ended(among ids: [BackendID], for drone: DroneID? = nil) -> [EndedBackend] {
        guard isCaughtUp else { return [] }
        return records.withLock { records in
            ids.prefix(Self.maximumReconciled).compactMap { id in
                guard let record = records[id] else { return nil }
                if let state = record.state, state.isTerminal { return EndedBackend(backend: id, state: state) }
                if let drone, let placed = record.drone, placed != drone { return EndedBackend(backend: id, state: .lost) }
                return nil
            }
        }
    }

    static let maximumReconciled = 100_000

    func apply(_ entry: KeyValueEntry) {
        guard let id = try? BackendID(entry.key) else { return }
        if entry.operation != .put {
            records.withLock { $0[id] = nil }
            return
        }
        guard let record = try? WireDecoder().decode(BackendRecord.self, from: entry.value) else { return }
        records.withLock { $0[id] = record }
    }

    /// Follows the bucket until cancelled; re-watches after an error.
    func follow(_ store: ControllerStore, logger: Logger) async {
        while !Task.isCancelled {
            do {
                for try await event in try await store.backends.watch() {
                    switch event {
                    case .entry(let entry): apply(entry)
                    case .caughtUp: caughtUp.withLock { $0 = true }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("directory.watch_failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
