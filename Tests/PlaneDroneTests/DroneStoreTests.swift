import Foundation
import PlaneCore
import PlaneTestSupport
import Testing
@testable import PlaneDrone

struct DroneStoreTests {
    let drone = DroneID.random()

    func spawn(_ id: BackendID = .random(), token: String? = nil) -> SpawnRequest {
        SpawnRequest(cluster: "plane.test", droneID: drone, maxIdleSeconds: 30, backendID: id, metadata: ["k": "v"],
                     executable: DockerExecutableConfig(image: "plane-test-server:latest"), bearerToken: token)
    }

    func update(_ backend: BackendID, _ state: BackendState) -> UpdateBackendStateMessage {
        UpdateBackendStateMessage(cluster: "plane.test", state: state, backend: backend, time: .now(), drone: drone)
    }

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & 0o7777 : nil
    }

    /// The store holds whole spawn requests (registry passwords, bearer tokens): its
    /// directory, database, WAL and shared-memory files are the drone's alone, also when an
    /// earlier version left them readable.
    @Test func theStoreIsOwnerOnly() async throws {
        let directory = try TestEnvironment.temporaryDirectory("drone-store-modes") + "/state"
        let path = directory + "/drone.sqlite3"
        do {
            let store = try DroneStore(path: path)
            _ = try await store.insert(spawn(token: "secret"), cluster: "plane.test", runtime: "docker", drone: drone, time: .now())
            #expect(Self.mode(directory) == 0o700)
            for file in [path, path + "-wal", path + "-shm"] {
                #expect(Self.mode(file) == 0o600, "\(file): \(String(Self.mode(file) ?? 0, radix: 8))")
            }
        }
        for file in [path, path + "-wal", path + "-shm"] { chmod(file, 0o644) }
        _ = try DroneStore(path: path)
        for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
            #expect(Self.mode(file) == 0o600, "\(file) narrowed at open")
        }
    }

    @Test func backendsStatesAndTheOutboxSurviveAReopen() async throws {
        let path = try TestEnvironment.temporaryDirectory("drone-store") + "/state/drone.sqlite3"
        let request = spawn(token: "tok")
        let id = request.backendID
        do {
            let store = try DroneStore(path: path)
            let first = try await store.insert(request, cluster: "plane.test", runtime: "docker", drone: drone, time: .now())
            #expect(first.update.state == .loading && first.update.backend == id)
            // The same id again is refused, live or not.
            await #expect(throws: DroneError.self) { try await store.insert(request, cluster: "plane.test", runtime: "docker", drone: drone, time: .now()) }
            try await store.recordPlacement(id, runtimeID: "c0ffee", address: "127.0.0.1:30001", port: 30001)
            _ = try await store.recordState(update(id, .starting))
            _ = try await store.recordState(update(id, .ready))
            #expect(try await store.liveBackendCount() == 1)
            #expect(try await store.portsInUse() == [30001])
            try await store.setRoute(StoredRoute(subdomain: id.rawValue, backendID: id, address: "127.0.0.1:30001", bearerToken: "tok", lastActive: Timestamp(secondsSinceEpoch: 100)))
            try await store.recordActivity([id: Timestamp(secondsSinceEpoch: 200)])
            try await store.recordActivity([id: Timestamp(secondsSinceEpoch: 150)])
            // The first update was acknowledged; the other two wait.
            try await store.acknowledge(first)
        }
        // A new process opens the same file.
        let store = try DroneStore(path: path)
        let stored = try #require(try await store.backend(id))
        #expect(stored.spawn == request && stored.state == .ready && stored.runtime == "docker" && stored.runtimeID == "c0ffee")
        #expect(stored.address == "127.0.0.1:30001" && stored.port == 30001 && stored.cluster == "plane.test")
        #expect(try await store.pendingUpdates().map(\.update.state) == [.starting, .ready])
        let routes = try await store.allRoutes()
        #expect(routes.count == 1 && routes[0].lastActive == Timestamp(secondsSinceEpoch: 200) && routes[0].bearerToken == "tok")
        // Terminal: not live any more, its port is free, the exit code is kept.
        _ = try await store.recordState(update(id, .failed), exitCode: 3)
        try await store.removeRoute(of: id)
        let live = try await store.liveBackendCount()
        let ports = try await store.portsInUse()
        let remainingRoutes = try await store.allRoutes()
        #expect(live == 0 && ports.isEmpty && remainingRoutes.isEmpty)
        #expect(try await store.backend(id)?.exitCode == 3)
        #expect(try await store.allBackends().map(\.backendID) == [id])
    }

    /// Per-connect access tokens: kept across a reopen, revocable, bounded per backend, and
    /// gone with the backend's route when it ends.
    @Test func accessTokensAreKeptBoundedAndEndWithTheRoute() async throws {
        let path = try TestEnvironment.temporaryDirectory("drone-store") + "/state/drone.sqlite3"
        let request = spawn()
        let id = request.backendID
        let tokens = (0..<3).map { "\(id).\(String(repeating: "abcdefgh", count: 3))\($0)\(String(repeating: "x", count: 7))" }
        do {
            let store = try DroneStore(path: path)
            _ = try await store.insert(request, cluster: "plane.test", runtime: "docker", drone: drone, time: .now())
            for token in tokens { _ = try await store.changeAccessToken(token, of: id, revoke: false) }
            #expect(try await store.changeAccessToken(tokens[0], of: id, revoke: false) == tokens)
            #expect(try await store.changeAccessToken(tokens[1], of: id, revoke: true) == [tokens[0], tokens[2]])
        }
        let store = try DroneStore(path: path)
        #expect(try await store.accessTokens(of: id) == [tokens[0], tokens[2]])
        for index in 0..<(DroneStore.maxAccessTokensPerBackend - 2) { _ = try await store.changeAccessToken("\(id).\(index)", of: id, revoke: false) }
        await #expect(throws: DroneError.self) { try await store.changeAccessToken("\(id).one-more", of: id, revoke: false) }
        try await store.removeRoute(of: id)
        #expect(try await store.accessTokens(of: id).isEmpty)
    }

    @Test func outboxKeepsOrderAcrossBackends() async throws {
        let store = try DroneStore(path: try TestEnvironment.temporaryDirectory("drone-store") + "/drone.sqlite3")
        let a = spawn()
        let b = spawn()
        _ = try await store.insert(a, cluster: "plane.test", runtime: "docker", drone: drone, time: .now())
        _ = try await store.insert(b, cluster: "plane.test", runtime: "docker", drone: drone, time: .now())
        _ = try await store.recordState(update(a.backendID, .starting))
        _ = try await store.recordState(update(b.backendID, .errorLoading))
        let pending = try await store.pendingUpdates()
        #expect(pending.map(\.update.backend) == [a.backendID, b.backendID, a.backendID, b.backendID])
        #expect(pending.map(\.update.state) == [.loading, .loading, .starting, .errorLoading])
        #expect(pending.map(\.sequence) == pending.map(\.sequence).sorted())
    }

    @Test func anUnwritableLocationIsAClearError() {
        #expect(throws: DroneError.self) { try DroneStore(path: "/proc/plane-cannot-write-here/drone.sqlite3") }
    }
}
