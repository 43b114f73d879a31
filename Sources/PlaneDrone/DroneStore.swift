import Foundation
import GRDB
import PlaneCore

/// The drone's durable state in SQLite (WAL, `synchronous = FULL`): backends, routes and
/// the outbox of state updates not yet acknowledged by a controller. A state change and its
/// outbox entry are written in one transaction, before anyone is told about it.
public final class DroneStore: Sendable {
    let pool: DatabasePool

    /// Opens (creating if needed) the database at `path` and migrates it.
    public init(path: String) throws(DroneError) {
        do {
            // Owner-only: the store holds whole spawn requests (registry passwords, bearer
            // tokens). SQLite creates `-wal` and `-shm` with the database file's mode.
            let parent = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
            if !FileManager.default.fileExists(atPath: parent) { try PrivateFiles.directory(parent) }
            try PrivateFiles.createFile(path)
            var configuration = Configuration()
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
            }
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
            for suffix in ["-wal", "-shm", "-journal"] { try PrivateFiles.restrictFile(path + suffix) }
        } catch {
            throw DroneError(.storeFailed, "Cannot open the drone store at \(path): \(error). Check that the state directory is writable.", cause: error)
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-backends-routes-outbox") { db in
            try db.execute(sql: """
                CREATE TABLE backend (
                    id TEXT PRIMARY KEY NOT NULL,
                    cluster TEXT NOT NULL,
                    spec TEXT NOT NULL,
                    state TEXT NOT NULL,
                    exit_code INTEGER,
                    runtime TEXT NOT NULL,
                    runtime_id TEXT,
                    address TEXT,
                    port INTEGER,
                    created_ns INTEGER NOT NULL,
                    updated_ns INTEGER NOT NULL
                );
                CREATE INDEX backend_state ON backend(state);
                CREATE TABLE route (
                    subdomain TEXT PRIMARY KEY NOT NULL,
                    backend TEXT NOT NULL REFERENCES backend(id) ON DELETE CASCADE,
                    address TEXT NOT NULL,
                    bearer_token TEXT,
                    last_active_ns INTEGER NOT NULL
                );
                CREATE TABLE outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    backend TEXT NOT NULL,
                    message TEXT NOT NULL
                );
                CREATE INDEX outbox_backend ON outbox(backend, seq);
                """)
        }
        migrator.registerMigration("v2-log-position") { db in
            try db.execute(sql: "ALTER TABLE backend ADD COLUMN last_log_ns INTEGER")
        }
        migrator.registerMigration("v3-lease") { db in
            try db.execute(sql: """
                CREATE TABLE lease (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    epoch INTEGER NOT NULL,
                    granted_ns INTEGER NOT NULL
                )
                """)
        }
        migrator.registerMigration("v4-access-tokens") { db in
            try db.execute(sql: """
                CREATE TABLE access_token (
                    backend TEXT NOT NULL REFERENCES backend(id) ON DELETE CASCADE,
                    token TEXT NOT NULL,
                    PRIMARY KEY (backend, token)
                )
                """)
        }
        migrator.registerMigration("v5-adopted-backends") { db in
            // A backend that took a warm pool's pre-started process: the runtime knows that
            // process by the warm id.
            try db.execute(sql: """
                CREATE TABLE adopted_backend (
                    backend TEXT PRIMARY KEY REFERENCES backend(id) ON DELETE CASCADE,
                    runtime_backend TEXT NOT NULL UNIQUE
                )
                """)
        }
        return migrator
    }

    // MARK: Backends

    /// Records a new backend in `Loading`, with its first outbox entry. Throws
    /// `.duplicateBackend` when the id is already known (live or not).
    public func insert(_ spawn: SpawnRequest, cluster: ClusterName, runtime: String, drone: DroneID, time: Timestamp) async throws(DroneError) -> OutboxEntry {
        let spec = String(decoding: try encode(spawn), as: UTF8.self)
        let update = UpdateBackendStateMessage(cluster: cluster, state: .loading, backend: spawn.backendID, time: time, drone: drone)
        let message = String(decoding: try encode(update), as: UTF8.self)
        do {
            return try await pool.write { db in
                if try Bool.fetchOne(db, sql: "SELECT 1 FROM backend WHERE id = ?", arguments: [spawn.backendID.rawValue]) == true {
                    throw DroneError(.duplicateBackend, "Backend \(spawn.backendID) is already known to this drone; it is not started twice.")
                }
                try db.execute(sql: """
                    INSERT INTO backend (id, cluster, spec, state, runtime, created_ns, updated_ns) VALUES (?, ?, ?, 'Loading', ?, ?, ?)
                    """, arguments: [spawn.backendID.rawValue, cluster.rawValue, spec, runtime, time.nanosecondsSinceEpoch, time.nanosecondsSinceEpoch])
                try db.execute(sql: "INSERT INTO outbox (backend, message) VALUES (?, ?)", arguments: [spawn.backendID.rawValue, message])
                return OutboxEntry(sequence: db.lastInsertedRowID, update: update)
            }
        } catch let error as DroneError {
            throw error
        } catch {
            throw storeError(error)
        }
    }

    /// Records a state change (and the exit code, if known) with its outbox entry.
    public func recordState(_ update: UpdateBackendStateMessage, exitCode: Int32? = nil) async throws(DroneError) -> OutboxEntry {
        let message = String(decoding: try encode(update), as: UTF8.self)
        do {
            return try await pool.write { db in
                try db.execute(sql: "UPDATE backend SET state = ?, exit_code = COALESCE(?, exit_code), updated_ns = ? WHERE id = ?",
                               arguments: [update.state.rawValue, exitCode.map { Int64($0) }, update.time.nanosecondsSinceEpoch, update.backend.rawValue])
                try db.execute(sql: "INSERT INTO outbox (backend, message) VALUES (?, ?)", arguments: [update.backend.rawValue, message])
                return OutboxEntry(sequence: db.lastInsertedRowID, update: update)
            }
        } catch {
            throw storeError(error)
        }
    }

    /// Remembers where the runtime put the backend.
    public func recordPlacement(_ backend: BackendID, runtimeID: String?, address: String?, port: Int?) async throws(DroneError) {
        do {
            try await pool.write { db in
                try db.execute(sql: "UPDATE backend SET runtime_id = ?, address = ?, port = ? WHERE id = ?",
                               arguments: [runtimeID, address, port.map { Int64($0) }, backend.rawValue])
            }
        } catch {
            throw storeError(error)
        }
    }

    /// The time of the last log line published for `backend`, so a restarted monitor does
    /// not publish it again.
    public func recordLogPosition(_ backend: BackendID, time: Timestamp) async throws(DroneError) {
        do {
            try await pool.write { db in
                try db.execute(sql: "UPDATE backend SET last_log_ns = ? WHERE id = ?", arguments: [time.nanosecondsSinceEpoch, backend.rawValue])
            }
        } catch {
            throw storeError(error)
        }
    }

    // MARK: Lease

    /// The drone's lease: its epoch and when the last granted renewal was sent (wall clock),
    /// so a restarted drone goes on from the same deadline.
    public func recordLease(epoch: UInt64, grantedAt: Timestamp) async throws(DroneError) {
        do {
            try await pool.write { db in
                try db.execute(sql: "INSERT INTO lease (id, epoch, granted_ns) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET epoch = excluded.epoch, granted_ns = excluded.granted_ns",
                               arguments: [Int64(bitPattern: epoch), grantedAt.nanosecondsSinceEpoch])
            }
        } catch {
            throw storeError(error)
        }
    }

    public func lease() async throws(DroneError) -> (epoch: UInt64, grantedAt: Timestamp)? {
        do {
            return try await pool.read { db -> (UInt64, Timestamp)? in
                guard let row = try Row.fetchOne(db, sql: "SELECT epoch, granted_ns FROM lease WHERE id = 1") else { return nil }
                let epoch: Int64 = row["epoch"]
                let granted: Int64 = row["granted_ns"]
                return (UInt64(bitPattern: epoch), Timestamp(nanosecondsSinceEpoch: granted))
            }
        } catch {
            throw storeError(error)
        }
    }

    public func backend(_ id: BackendID) async throws(DroneError) -> StoredBackend? {
        try await backends(where: "id = ?", [id.rawValue]).first
    }

    /// Every backend the store knows, oldest first.
    public func allBackends() async throws(DroneError) -> [StoredBackend] {
        try await backends(where: "1", [])
    }

    /// Backends in `Loading`, `Starting` or `Ready` (the heartbeat's `running_backends`).
    public func liveBackendCount() async throws(DroneError) -> Int {
        do {
            return try await pool.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM backend WHERE state IN ('Loading', 'Starting', 'Ready')") ?? 0
            }
        } catch {
            throw storeError(error)
        }
    }

    /// Ports held by live backends (so a new backend gets a free one).
    public func portsInUse() async throws(DroneError) -> Set<Int> {
        do {
            return try await pool.read { db in
                Set(try Int.fetchAll(db, sql: "SELECT port FROM backend WHERE port IS NOT NULL AND state IN ('Loading', 'Starting', 'Ready')"))
            }
        } catch {
            throw storeError(error)
        }
    }

    func backends(where condition: String, _ arguments: [String]) async throws(DroneError) -> [StoredBackend] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM backend WHERE \(condition) ORDER BY created_ns", arguments: StatementArguments(arguments))
                    .map { row throws(DroneError) in try StoredBackend(row: row) }
            }
        } catch let error as DroneError {
            throw error
        } catch {
            throw storeError(error)
        }
    }

    // MARK: Adopted warm backends

    /// `backend` runs as the process the runtime knows as `runtimeBackend` (a warm pool's).
    public func recordAdoption(_ backend: BackendID, runtimeBackend: BackendID) async throws(DroneError) {
        do {
            try await pool.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO adopted_backend (backend, runtime_backend) VALUES (?, ?)",
                               arguments: [backend.rawValue, runtimeBackend.rawValue])
            }
        } catch {
            throw storeError(error)
        }
    }

    /// Every adoption: backend id → the runtime's id for it.
    public func adoptions() async throws(DroneError) -> [BackendID: BackendID] {
        do {
            // Plain strings out of the read (a `Row` is not `Sendable`, so reading rows out
            // would take GRDB's blocking `read`).
            let pairs = try await pool.read { db in
                try Row.fetchAll(db, sql: "SELECT backend, runtime_backend FROM adopted_backend").map { row in (row["backend"] as String, row["runtime_backend"] as String) }
            }
            var result: [BackendID: BackendID] = [:]
            for (backendText, runtimeText) in pairs {
                guard let backend = try? BackendID(backendText), let runtime = try? BackendID(runtimeText) else { continue }
                result[backend] = runtime
            }
            return result
        } catch {
            throw storeError(error)
        }
    }

    // MARK: Access tokens

    /// Per-connect access tokens a backend keeps at most.
    public static let maxAccessTokensPerBackend = 1000

    /// Adds (or with `revoke` removes) a per-connect access token of `backend`; returns the
    /// backend's tokens after the change. Throws `.invalidSpawn` beyond the bound.
    public func changeAccessToken(_ token: String, of backend: BackendID, revoke: Bool) async throws(DroneError) -> [String] {
        do {
            return try await pool.write { db in
                if revoke {
                    try db.execute(sql: "DELETE FROM access_token WHERE backend = ? AND token = ?", arguments: [backend.rawValue, token])
                } else {
                    let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM access_token WHERE backend = ?", arguments: [backend.rawValue]) ?? 0
                    guard count < Self.maxAccessTokensPerBackend else {
                        throw DroneError(.invalidSpawn, "Backend \(backend) has \(count) access tokens, the most it keeps; revoke some first.")
                    }
                    try db.execute(sql: "INSERT OR IGNORE INTO access_token (backend, token) VALUES (?, ?)", arguments: [backend.rawValue, token])
                }
                return try String.fetchAll(db, sql: "SELECT token FROM access_token WHERE backend = ? ORDER BY rowid", arguments: [backend.rawValue])
            }
        } catch let error as DroneError {
            throw error
        } catch {
            throw storeError(error)
        }
    }

    public func accessTokens(of backend: BackendID) async throws(DroneError) -> [String] {
        do {
            return try await pool.read { db in
                try String.fetchAll(db, sql: "SELECT token FROM access_token WHERE backend = ? ORDER BY rowid", arguments: [backend.rawValue])
            }
        } catch {
            throw storeError(error)
        }
    }

    // MARK: Routes

    public func setRoute(_ route: StoredRoute) async throws(DroneError) {
        do {
            try await pool.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO route (subdomain, backend, address, bearer_token, last_active_ns) VALUES (?, ?, ?, ?, ?)",
                               arguments: [route.subdomain, route.backendID.rawValue, route.address, route.bearerToken, route.lastActive.nanosecondsSinceEpoch])
            }
        } catch {
            throw storeError(error)
        }
    }

    public func removeRoute(of backend: BackendID) async throws(DroneError) {
        do {
            // An ended backend's access tokens go with its route.
            try await pool.write { db in
                try db.execute(sql: "DELETE FROM route WHERE backend = ?", arguments: [backend.rawValue])
                try db.execute(sql: "DELETE FROM access_token WHERE backend = ?", arguments: [backend.rawValue])
            }
        } catch {
            throw storeError(error)
        }
    }

    /// Persists activity times (the route table flushes them now and then).
    public func recordActivity(_ times: [BackendID: Timestamp]) async throws(DroneError) {
        guard !times.isEmpty else { return }
        do {
            try await pool.write { db in
                for (backend, time) in times {
                    try db.execute(sql: "UPDATE route SET last_active_ns = MAX(last_active_ns, ?) WHERE backend = ?", arguments: [time.nanosecondsSinceEpoch, backend.rawValue])
                }
            }
        } catch {
            throw storeError(error)
        }
    }

    public func allRoutes() async throws(DroneError) -> [StoredRoute] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM route").map { row throws(DroneError) in try StoredRoute(row: row) }
            }
        } catch let error as DroneError {
            throw error
        } catch {
            throw storeError(error)
        }
    }

    // MARK: Outbox

    /// Unacknowledged updates in the order they were recorded.
    public func pendingUpdates() async throws(DroneError) -> [OutboxEntry] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(db, sql: "SELECT seq, message FROM outbox ORDER BY seq").map { row throws(DroneError) in
                    let text: String = row["message"]
                    do {
                        return OutboxEntry(sequence: row["seq"], update: try WireDecoder(limits: .stored).decode(UpdateBackendStateMessage.self, from: Array(text.utf8)))
                    } catch {
                        throw DroneError(.storeFailed, "Outbox entry \(row["seq"] as Int64) does not decode: \(error)", cause: error)
                    }
                }
            }
        } catch let error as DroneError {
            throw error
        } catch {
            throw storeError(error)
        }
    }

    /// A controller stored the update: drop it from the outbox.
    public func acknowledge(_ entry: OutboxEntry) async throws(DroneError) {
        do {
            try await pool.write { db in try db.execute(sql: "DELETE FROM outbox WHERE seq = ?", arguments: [entry.sequence]) }
        } catch {
            throw storeError(error)
        }
    }

    // MARK: Helpers

    func encode(_ value: some Encodable) throws(DroneError) -> [UInt8] {
        do {
            return try WireEncoder().encode(value)
        } catch {
            throw DroneError(.storeFailed, "Cannot encode \(type(of: value)): \(error)", cause: error)
        }
    }

    func storeError(_ error: any Error) -> DroneError {
        DroneError(.storeFailed, "The drone store failed: \(error). Check the disk and the state directory.", cause: error)
    }
}

/// An update waiting in the outbox.
public struct OutboxEntry: Sendable, Hashable {
    /// The store's sequence; negative for an update the store could not record (a full or
    /// failing disk), which the outbox sends from memory only.
    public var sequence: Int64
    public var update: UpdateBackendStateMessage

    /// Whether the store holds it (and it is dropped from there once acknowledged).
    public var isRecorded: Bool { sequence > 0 }
}

/// A backend as the store keeps it.
public struct StoredBackend: Sendable, Hashable {
    public var spawn: SpawnRequest
    public var cluster: ClusterName
    public var state: BackendState
    public var exitCode: Int32?
    public var runtime: String
    public var runtimeID: String?
    public var address: String?
    public var port: Int?
    public var created: Timestamp
    public var updated: Timestamp
    /// Time of the last published log line.
    public var lastLogTime: Timestamp?

    public var backendID: BackendID { spawn.backendID }

    init(row: Row) throws(DroneError) {
        let spec: String = row["spec"]
        let stateText: String = row["state"]
        do {
            spawn = try WireDecoder(limits: .stored).decode(SpawnRequest.self, from: Array(spec.utf8))
            cluster = try ClusterName(row["cluster"] as String)
        } catch {
            throw DroneError(.storeFailed, "Stored backend \(row["id"] as String) does not decode: \(error)", cause: error)
        }
        guard let state = BackendState(rawValue: stateText) else {
            throw DroneError(.storeFailed, "Stored backend \(row["id"] as String) has an unknown state '\(stateText)'.")
        }
        self.state = state
        exitCode = (row["exit_code"] as Int64?).map { Int32(truncatingIfNeeded: $0) }
        runtime = row["runtime"]
        runtimeID = row["runtime_id"]
        address = row["address"]
        port = (row["port"] as Int64?).map { Int($0) }
        created = Timestamp(nanosecondsSinceEpoch: row["created_ns"])
        updated = Timestamp(nanosecondsSinceEpoch: row["updated_ns"])
        lastLogTime = (row["last_log_ns"] as Int64?).map { Timestamp(nanosecondsSinceEpoch: $0) }
    }
}

/// A route as the store keeps it (the proxy reads the in-memory table, not this).
public struct StoredRoute: Sendable, Hashable {
    public var subdomain: String
    public var backendID: BackendID
    public var address: String
    public var bearerToken: String?
    public var lastActive: Timestamp

    public init(subdomain: String, backendID: BackendID, address: String, bearerToken: String?, lastActive: Timestamp) {
        self.subdomain = subdomain
        self.backendID = backendID
        self.address = address
        self.bearerToken = bearerToken
        self.lastActive = lastActive
    }

    init(row: Row) throws(DroneError) {
        do {
            backendID = try BackendID(row["backend"] as String)
        } catch {
            throw DroneError(.storeFailed, "A stored route has an invalid backend id: \(error)", cause: error)
        }
        subdomain = row["subdomain"]
        address = row["address"]
        bearerToken = row["bearer_token"]
        lastActive = Timestamp(nanosecondsSinceEpoch: row["last_active_ns"])
    }
}
