import Logging
import NATS
import NIOCore
import NIOHTTP1
import NIOPosix
import PlaneCore
import PlaneHTTPServer
import PlaneMessaging
import Synchronization

/// The controller's HTTP API (`[http]`): spawn a configured service, read a backend's
/// status (once or as Server-Sent Events), health and Prometheus metrics. Spawns go
/// through `cluster.{c}.schedule` like any NATS client's, so the API works on a controller
/// without `[scheduler]` too.
public final class HTTPAPIServer: Sendable {
    public struct BoundAddress: Sendable, Hashable {
        public var host: String
        public var port: Int
    }

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    let configuration: HTTPAPIConfiguration
    let messenger: PlaneMessenger
    let metrics: ControllerMetrics
    let liveDrones: @Sendable () -> Int
    let backendCounts: @Sendable () -> [String: Int]
    let dnsCounts: @Sendable () -> [String: Int]
    /// What the dashboard shows now, with the idle times its stream collected.
    let dashboard: @Sendable ([BackendID: DashboardSnapshot.IdleSample]) -> DashboardSnapshot
    /// Open `/dashboard/events` streams (at most `maxDashboardStreams`).
    let dashboardStreams = ConnectionLimit(limit: HTTPAPIServer.maxDashboardStreams)
    /// Open connections (at most `[http] max_connections`, and `max_connections_per_address`
    /// from one client).
    let openConnections: AddressConnectionLimit
    /// Open `/backend/{id}/status/stream` streams (at most `[http] max_status_streams`).
    let statusStreams: ConnectionLimit
    static let maxDashboardStreams = 32
    /// How long a connection over `max_connections` may take to send the request its 503 answers.
    static let refusalTime = TimeAmount.seconds(2)
    /// Refused connections given `refusalTime` for their 503 at once; beyond them a refused
    /// connection is closed as it arrives, so a flood of connections holds at most this many
    /// more sockets.
    let refusals = ConnectionLimit(limit: HTTPAPIServer.maxRefusals)
    static let maxRefusals = 64
    /// Idle times a dashboard stream keeps (backends it has seen stats of).
    static let maxIdleSamples = 100_000
    let logger: Logger
    private let server = Mutex<NIOAsyncChannel<Connection, Never>?>(nil)
    /// The longest a spawn may take: every drone attempt's timeout, plus margin.
    let spawnTimeout: Duration

    init(configuration: HTTPAPIConfiguration, controller: Controller, logger: Logger) {
        self.configuration = configuration
        openConnections = AddressConnectionLimit(limit: configuration.maxConnections,
                                                 limitPerAddress: configuration.maxConnectionsPerAddress ?? configuration.maxConnections)
        statusStreams = ConnectionLimit(limit: configuration.maxStatusStreams)
        self.messenger = controller.messenger
        self.metrics = controller.metrics
        self.logger = logger
        self.liveDrones = { [weak controller] in controller?.scheduler?.liveDroneCount() ?? 0 }
        self.backendCounts = { [weak controller] in controller?.directory.countsByState ?? [:] }
        self.dnsCounts = { [weak controller] in
            var counts: [String: Int] = [:]
            for (outcome, count) in controller?.dnsServer?.counters.byOutcome ?? [:] { counts[outcome.rawValue] = count }
            return counts
        }
        let scheduler = controller.configuration.scheduler ?? SchedulerConfiguration()
        let cluster = configuration.cluster
        self.dashboard = { [weak controller] idle in
            DashboardSnapshot(cluster: cluster, drones: controller?.scheduler?.drones, droneTimeout: scheduler.droneTimeout,
                              backends: controller?.directory.all ?? [], idle: idle)
        }
        self.spawnTimeout = scheduler.spawnTimeout * scheduler.maxSpawnAttempts + .seconds(10)
    }

    public var address: BoundAddress? {
        server.withLock { $0?.channel.localAddress?.port }.map { BoundAddress(host: configuration.bindHost, port: $0) }
    }

    func start() async throws {
        if let problem = configuration.exposureProblem {
            throw ControllerError(.startupFailed, "The HTTP API does not start: \(problem).")
        }
        // Whole seconds, at least one and at most a day (the configuration key allows 1 to 3600).
        let requestTimeout = TimeAmount.seconds(min(max(configuration.requestTimeout.components.seconds, 1), 86_400))
        let logger = logger
        let timedOut: @Sendable (Bool) -> Void = { requestBegun in
            // An idle keep-alive connection closing is routine; a request not finished in
            // time is a slow (or hostile) client.
            if requestBegun { logger.debug("http.request_timeout") }
        }
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 256)
                .bind(host: configuration.bindHost, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(HTTPRequestTimeoutHandler(limit: requestTimeout, timedOut: timedOut))
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
            server.withLock { $0 = channel }
            logger.info("http.listening", metadata: ["http.address": "\(configuration.bindHost)", "http.port": "\(channel.channel.localAddress?.port ?? 0)"])
        } catch {
            throw ControllerError(.startupFailed, "The HTTP API cannot listen on \(configuration.bindHost):\(configuration.port); is the port in use? Set [http] port and bind_ip.", cause: error)
        }
    }

    func serve() async {
        guard let channel = server.withLock({ $0 }) else { return }
        do {
            try await channel.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        let client = AddressConnectionLimit.Client(connection.channel.remoteAddress)
                        let admission = openConnections.admit(client)
                        guard admission == .admitted else {
                            let key = admission == .full ? HTTPAPIConfiguration.maxConnectionsKey : HTTPAPIConfiguration.maxConnectionsPerAddressKey
                            recordLimit(key, client: connection.channel.remoteAddress)
                            guard refusals.admit() else {
                                // Closed here, in the accept loop (a connection's writer
                                // must be finished, which executeThenClose does): a flood
                                // is accepted no faster than it is closed.
                                try? await connection.executeThenClose { _, _ in }
                                continue
                            }
                            group.addTask {
                                defer { self.refusals.release() }
                                await self.refuse(connection, reason: admission)
                            }
                            continue
                        }
                        group.addTask {
                            defer { self.openConnections.release(client) }
                            await self.handle(connection)
                        }
                    }
                }
            }
        } catch is CancellationError {
        } catch {
            logger.warning("http.server_stopped", metadata: ["error": "\(error)"])
        }
    }

    func stop() async {
        let channel = server.withLock { $0 }
        try? await channel?.channel.close()
    }

    // MARK: Connections

    /// A connection over `max_connections` (or its client's `max_connections_per_address`):
    /// its request is read (so that the answer is not lost to a reset) and answered 503, all
    /// within `refusalTime`: a flood of refused connections holds each for at most that long
    /// (and at most `maxRefusals` of them at once).
    func refuse(_ connection: Connection, reason: AddressConnectionLimit.Admission) async {
        let message = reason == .addressFull
            ? "You have \(openConnections.limitPerAddress) connections to the HTTP API open ([http] max_connections_per_address); close one or try again."
            : "The HTTP API has \(configuration.maxConnections) connections open ([http] max_connections); try again."
        let channel = connection.channel
        channel.eventLoop.scheduleTask(in: Self.refusalTime) { channel.close(promise: nil) }
        try? await connection.executeThenClose { inbound, outbound in
            for try await part in inbound {
                guard case .end = part else { continue }
                try await write(.error(.serviceUnavailable, message,
                                       extraHeaders: [("Retry-After", "1")]), to: outbound, keepAlive: false)
                return
            }
        }
    }

    /// Counts a limit that was hit, and logs it (at most once per `LimitCounters.logInterval`).
    func recordLimit(_ key: String, client: SocketAddress?) {
        guard let hits = LimitCounters.shared.record(key) else { return }
        logger.notice("limit.exceeded", metadata: ["plane.limit": "\(key)", "plane.limit_hits": "\(hits)", "http.client": "\(client?.ipAddress ?? "?")"])
    }

    func handle(_ connection: Connection) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body = ByteBuffer()
                for try await part in inbound {
                    switch part {
                    case .head(let value):
                        head = value
                        body.clear()
                    case .body(var chunk):
                        guard body.readableBytes + chunk.readableBytes <= 1 << 20 else {
                            try await write(HTTPAPIResponse.error(.payloadTooLarge, "The body is larger than 1 MiB."), to: outbound, keepAlive: false)
                            return
                        }
                        body.writeBuffer(&chunk)
                    case .end:
                        guard let request = head else { return }
                        let keepAlive = request.isKeepAlive
                        let response = await respond(to: request, body: Array(body.readableBytesView))
                        if case .complete(let complete) = response, complete.status == .unauthorized {
                            // The path only: a query string could carry a secret.
                            let path = request.uri.split(separator: "?", maxSplits: 1).first ?? ""
                            logger.notice("http.unauthorized", metadata: ["http.path": "\(path.prefix(200))"])
                        }
                        switch response {
                        case .complete(let complete):
                            try await write(complete, to: outbound, keepAlive: keepAlive)
                            if !keepAlive { return }
                        case .events(let backend, let after):
                            try await streamEvents(of: backend, after: after, to: outbound, client: connection.channel.remoteAddress,
                                                   closed: connection.channel.closeFuture)
                            return
                        case .dashboardEvents:
                            try await streamDashboard(to: outbound)
                            return
                        }
                        head = nil
                    }
                }
            }
        } catch {
            logger.debug("http.connection_error", metadata: ["error": "\(error)"])
        }
    }

    enum Outcome {
        case complete(HTTPAPIResponse)
        /// A backend's state changes as Server-Sent Events, after the stream sequence given
        /// as `Last-Event-ID` (nil: from the start).
        case events(BackendID, after: UInt64?)
        /// The dashboard's snapshots as Server-Sent Events, one whenever it changes.
        case dashboardEvents
    }

    /// The query's `name=value` pairs (no decoding beyond what the routes need: flags).
    static func query(of uri: String) -> [String: String] {
        guard let mark = uri.firstIndex(of: "?") else { return [:] }
        var pairs: [String: String] = [:]
        for item in uri[uri.index(after: mark)...].split(separator: "&").prefix(32) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            pairs[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return pairs
    }

    /// Whether the request carries the configured token. Without a token configured (a
    /// loopback-only API) nobody is authenticated, and nobody needs to be.
    func authenticated(_ head: HTTPRequestHead) -> Bool {
        guard let token = configuration.token else { return false }
        let expected = Array(token.utf8)[...]
        var matched = false
        for value in head.headers["authorization"] {
            if let given = BearerCredential.parse(value), ConstantTimeComparison.equal(given, expected) { matched = true }
        }
        return matched
    }

    func respond(to head: HTTPRequestHead, body: [UInt8]) async -> Outcome {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let cors = parts.first == "backend"
        if head.method == .OPTIONS {
            return .complete(HTTPAPIResponse(status: .noContent, cors: cors, extraHeaders: [
                ("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"), ("Access-Control-Allow-Headers", "Content-Type, Authorization"),
            ]))
        }
        let authenticated = authenticated(head)
        // Public with a token configured: health (for load balancers) and a backend's state
        // (for the browsers of its users, which must not hold the API token).
        // The dashboard's page and its scripts hold no data (its data needs the token).
        let isPublic = parts == ["healthz"] || (parts.first == "backend" && head.method == .GET)
            || (head.method == .GET && (parts == ["dashboard"] || parts == ["dashboard", "dashboard.js"] || parts == ["dashboard", "dashboard.css"]))
        if configuration.token != nil && !authenticated && !isPublic {
            let presented = !head.headers["authorization"].isEmpty
            return .complete(.error(.unauthorized, presented ? "The token is not valid." : "This API needs Authorization: Bearer <token> ([http] token).",
                                    extraHeaders: [("WWW-Authenticate", "Bearer")]))
        }
        switch (head.method, parts.count, parts.first) {
        case (.GET, 0, _):
            return .complete(HTTPAPIResponse(status: .ok, contentType: "text/plain; charset=utf-8", body: Array("Plane controller \(PlaneVersion.current)\n".utf8)))
        case (.GET, 1, "healthz"):
            return .complete(HTTPAPIResponse(status: .ok, contentType: "text/plain; charset=utf-8", body: Array("ok\n".utf8)))
        case (.GET, 1, "metrics"):
            let text = metrics.render(liveDrones: liveDrones(), backendsByState: backendCounts(), dnsQueries: dnsCounts())
            return .complete(HTTPAPIResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(text.utf8)))
        case (.GET, 1, "dashboard"):
            return .complete(Self.dashboardAsset(DashboardAssets.html, type: "text/html; charset=utf-8"))
        case (.GET, 2, "dashboard") where parts[1] == "dashboard.js":
            return .complete(Self.dashboardAsset(DashboardAssets.javascript, type: "text/javascript; charset=utf-8"))
        case (.GET, 2, "dashboard") where parts[1] == "dashboard.css":
            return .complete(Self.dashboardAsset(DashboardAssets.css, type: "text/css; charset=utf-8"))
        case (.GET, 2, "dashboard") where parts[1] == "state":
            let body = JSONWriter.write(dashboard([:]).json(now: .now(), instant: .now))
            return .complete(HTTPAPIResponse(status: .ok, contentType: "application/json", body: body, extraHeaders: [("Cache-Control", "no-store")]))
        case (.GET, 2, "dashboard") where parts[1] == "events":
            return .dashboardEvents
        case (.POST, 3, "service") where parts[2] == "spawn":
            return .complete(await spawn(service: parts[1], body: body, host: head.headers["host"].first, authenticated: authenticated))
        case (.GET, 3, "backend") where parts[2] == "status", (.GET, 4, "backend") where parts[2] == "status" && parts[3] == "stream":
            guard let backend = try? BackendID(parts[1]) else {
                return .complete(.error(.badRequest, "'\(parts[1])' is not a backend id.", cors: true))
            }
            if parts.count == 4 {
                // A reconnecting EventSource sends the id of the last event it saw.
                let lastID = head.headers["last-event-id"].first.flatMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
                return .events(backend, after: lastID)
            }
            return .complete(await status(of: backend))
        case (.POST, 2, "ctrl") where parts[1] == "connect":
            return .complete(await connect(body: body, host: head.headers["host"].first))
        case (.DELETE, 3, "ctrl") where parts[1] == "token":
            return .complete(await revoke(token: parts[2]))
        case (.DELETE, 3, "ctrl") where parts[1] == "backend":
            guard let backend = try? BackendID(parts[2]) else { return .complete(.error(.badRequest, "'\(parts[2])' is not a backend id.")) }
            return .complete(await terminate(backend, hard: Self.query(of: head.uri)["hard"] == "true"))
        case (.POST, 4, "ctrl") where parts[1] == "drone" && parts[3] == "drain":
            guard let drone = try? DroneID(parts[2]) else { return .complete(.error(.badRequest, "'\(parts[2])' is not a drone id.")) }
            return .complete(await drain(drone, drain: Self.query(of: head.uri)["cancel"] != "true"))
        case (_, 3, "service"), (_, 3, "backend"), (_, 4, "backend"), (_, 0, _), (_, 1, "healthz"), (_, 1, "metrics"), (_, 2, "ctrl"), (_, 3, "ctrl"), (_, 4, "ctrl"), (_, 1, "dashboard"):
            return .complete(.error(.methodNotAllowed, "\(head.method.rawValue) is not allowed on \(path).", cors: cors))
        case (_, 2, "dashboard") where ["dashboard.js", "dashboard.css", "state", "events"].contains(parts[1]):
            return .complete(.error(.methodNotAllowed, "\(head.method.rawValue) is not allowed on \(path)."))
        default:
            return .complete(.error(.notFound, "No route \(path). Routes: POST /service/{name}/spawn, GET /backend/{id}/status[/stream], POST /ctrl/connect, DELETE /ctrl/token/{token}, DELETE /ctrl/backend/{id}[?hard=true], POST /ctrl/drone/{id}/drain[?cancel=true], GET /dashboard, GET /healthz, GET /metrics.", cors: cors))
        }
    }

    // MARK: Routes

    func spawn(service: String, body: [UInt8], host: String?, authenticated: Bool) async -> HTTPAPIResponse {
        guard let serviceConfiguration = configuration.services[service] else {
            let known = configuration.services.keys.sorted().joined(separator: ", ")
            return .error(.notFound, "Unknown service '\(service)'. Configured services: \(known.isEmpty ? "none ([http.services] is empty)" : known).")
        }
        let schedule: ScheduleRequest
        do {
            let request = try HTTPSpawnRequest.parse(body)
            schedule = try request.scheduleRequest(cluster: configuration.cluster, service: serviceConfiguration, named: service)
        } catch {
            return .error(error.code == .forbidden ? .forbidden : .badRequest, error.message, code: error.code == .forbidden ? error.code.rawValue : nil)
        }
        let response: ScheduleResponse
        do {
            response = try await messenger.request(PlaneSubjects.schedule(configuration.cluster), schedule,
                                                   timeout: spawnTimeout)
        } catch {
            logger.warning("http.schedule_failed", metadata: ["error": "\(error)"])
            return .error(.serviceUnavailable, "No scheduler answered for cluster \(configuration.cluster) (\(error)); is a controller with [scheduler] running?")
        }
        switch response {
        case .scheduled(let backend):
            var object = JSONObject()
            object["url"] = .string("https://\(configuration.cluster.hostname(of: backend.backendID))")
            object["name"] = .string(backend.backendID.rawValue)
            object["status_url"] = .string("http://\(host ?? "\(configuration.bindHost):\(configuration.port)")/backend/\(backend.backendID)/status")
            // An existing backend's token goes only to an authenticated caller: whoever names
            // a lock must not learn the token of the backend that holds it.
            if let token = backend.bearerToken, backend.spawned || authenticated { object["bearer_token"] = .string(token) }
            object["spawned"] = .bool(backend.spawned)
            object["drone"] = .string(backend.drone.rawValue)
            return HTTPAPIResponse(status: .ok, json: .object(object))
        case .noDroneAvailable(let reason?):
            return .error(.serviceUnavailable, "No drone is available in cluster \(configuration.cluster): \(reason).", code: "NoDroneAvailable")
        case .noDroneAvailable(nil):
            return .error(.serviceUnavailable, "No drone is available in cluster \(configuration.cluster); start a drone or wait for one to become ready.", code: "NoDroneAvailable")
        case .error(let error):
            let status: HTTPResponseStatus = switch error.code {
            case "backend_id_in_use": .conflict
            case "invalid_runtime_options", "invalid_message", "limit_exceeded": .badRequest
            default: .internalServerError
            }
            return .error(status, error.message, code: error.code)
        }
    }

    /// `POST /ctrl/connect`: the live backend for a key, or a new one (the key is its lock,
    /// so every controller answers the same backend), with an access token of this caller's
    /// own. Only with `[http] token`: the answer grants access to the backend, which must not
    /// go to whoever names a key.
    func connect(body: [UInt8], host: String?) async -> HTTPAPIResponse {
        guard configuration.token != nil else {
            return .error(.forbidden, "POST /ctrl/connect needs [http] token: its answer grants access to the backend, which must not go to whoever names a key.")
        }
        let schedule: ScheduleRequest
        do {
            schedule = try HTTPConnectRequest.parse(body).scheduleRequest(cluster: configuration.cluster, services: configuration.services)
        } catch {
            let status: HTTPResponseStatus = switch error.code {
            case .forbidden: .forbidden
            case .notFound: .notFound
            default: .badRequest
            }
            return .error(status, error.message, code: error.code == .invalidRequest ? nil : error.code.rawValue)
        }
        let response: ScheduleResponse
        do {
            response = try await messenger.request(PlaneSubjects.schedule(configuration.cluster), schedule, timeout: spawnTimeout)
        } catch {
            logger.warning("http.schedule_failed", metadata: ["error": "\(error)"])
            return .error(.serviceUnavailable, "No scheduler answered for cluster \(configuration.cluster) (\(error)); is a controller with [scheduler] running?")
        }
        switch response {
        case .scheduled(let backend):
            // This caller's own access token, given to the backend's drone before the answer.
            let token = BearerToken.accessToken(for: backend.backendID)
            switch await changeAccessToken(token, of: backend.backendID, revoke: false) {
            case .done: break
            case .refused(let reason), .unreachable(let reason):
                return .error(.serviceUnavailable, "Backend \(backend.backendID) was found, but its drone did not take the access token (\(reason)); try again.")
            }
            var object = JSONObject()
            object["backend_id"] = .string(backend.backendID.rawValue)
            object["url"] = .string("https://\(configuration.cluster.hostname(of: backend.backendID))")
            object["token"] = .string(token)
            object["status_url"] = .string("http://\(host ?? "\(configuration.bindHost):\(configuration.port)")/backend/\(backend.backendID)/status")
            object["spawned"] = .bool(backend.spawned)
            object["drone"] = .string(backend.drone.rawValue)
            logger.info("http.connect", metadata: ["plane.backend": "\(backend.backendID)", "plane.spawned": "\(backend.spawned)"])
            return HTTPAPIResponse(status: .ok, json: .object(object))
        case .noDroneAvailable(let reason):
            return .error(.serviceUnavailable, "No drone is available in cluster \(configuration.cluster)\(reason.map { ": \($0)." } ?? "; start a drone or wait for one to become ready.")", code: "NoDroneAvailable")
        case .error(let error):
            let status: HTTPResponseStatus = switch error.code {
            case "invalid_runtime_options", "invalid_message", "limit_exceeded", "invalid_lock": .badRequest
            default: .internalServerError
            }
            return .error(status, error.message, code: error.code)
        }
    }

    enum AccessTokenChange {
        case done
        case refused(String)
        case unreachable(String)
    }

    /// Grants or revokes a per-connect access token through the backend's drone.
    func changeAccessToken(_ token: String, of backend: BackendID, revoke: Bool) async -> AccessTokenChange {
        do {
            let message = try BackendAccessTokenMessage(cluster: configuration.cluster, backendID: backend, token: token, revoke: revoke)
            let accepted = try await messenger.request(PlaneSubjects.accessToken(configuration.cluster, backend), message, timeout: .seconds(5))
            return accepted ? .done : .refused("the drone refused it; see its log")
        } catch {
            return .unreachable("\(error)")
        }
    }

    /// `DELETE /ctrl/token/{token}`: a per-connect access token stops working. `200`; `404`
    /// for a backend that has ended (its tokens ended with it); `504` when its drone did not
    /// answer.
    func revoke(token: String) async -> HTTPAPIResponse {
        guard let backend = BackendAccessTokenMessage.backendID(of: token) else {
            return .error(.badRequest, "That is not an access token from POST /ctrl/connect ({backend_id}.{32 letters or digits}).")
        }
        if let stored = try? await messenger.jetStream.lastMessage(stream: PlaneSubjects.backendStatusStream, subject: PlaneSubjects.backendStatus(backend).subject),
           let state = try? WireDecoder().decode(BackendStateMessage.self, from: stored.payload).state, state.isTerminal {
            return .error(.notFound, "Backend \(backend) has ended (\(state.rawValue)); its access tokens ended with it.")
        }
        switch await changeAccessToken(token, of: backend, revoke: true) {
        case .done:
            logger.info("http.token_revoked", metadata: ["plane.backend": "\(backend)"])
            return HTTPAPIResponse(status: .ok, json: .object(JSONObject([("backend_id", .string(backend.rawValue)), ("revoked", .bool(true))])))
        case .refused(let reason):
            return .error(.internalServerError, "The drone of backend \(backend) did not revoke the token (\(reason)).")
        case .unreachable(let reason):
            return .error(.gatewayTimeout, "The drone of backend \(backend) did not answer (\(reason)); the token may still work, try again.")
        }
    }

    /// `DELETE /ctrl/backend/{id}`: asks the drone holding the backend to stop it (with its
    /// grace period, or at once with `hard`). `202` with its last recorded state; `404` for a
    /// backend without one; `409` for one that has ended already.
    func terminate(_ backend: BackendID, hard: Bool) async -> HTTPAPIResponse {
        let state: BackendState
        do {
            guard let stored = try await messenger.jetStream.lastMessage(stream: PlaneSubjects.backendStatusStream, subject: PlaneSubjects.backendStatus(backend).subject) else {
                return .error(.notFound, "Backend \(backend) has no recorded state.")
            }
            state = try WireDecoder().decode(BackendStateMessage.self, from: stored.payload).state
        } catch {
            return .error(.serviceUnavailable, "The backend_status stream cannot be read (\(error)).")
        }
        if state.isTerminal { return .error(.conflict, "Backend \(backend) has ended already (\(state.rawValue)).", code: "ended") }
        let request = TerminationRequest(cluster: configuration.cluster, backendID: backend, hard: hard)
        do {
            try await messenger.client.publish(PlaneSubjects.terminate(configuration.cluster, backend).subject, payload: WireEncoder().encode(request))
        } catch {
            return .error(.serviceUnavailable, "The termination could not be sent (\(error)); try again.")
        }
        logger.info("http.terminate", metadata: ["plane.backend": "\(backend)", "plane.hard": "\(hard)"])
        return HTTPAPIResponse(status: .accepted, json: .object(JSONObject([("backend_id", .string(backend.rawValue)), ("state", .string(state.rawValue)), ("hard", .bool(hard))])))
    }

    /// `POST /ctrl/drone/{id}/drain`: the drone takes no new backends (`?cancel=true`: it
    /// takes them again). `200` once the drone answered; `504` when it did not.
    func drain(_ drone: DroneID, drain: Bool) async -> HTTPAPIResponse {
        let request = DrainDrone(drone: drone, cluster: configuration.cluster, drain: drain)
        do {
            _ = try await messenger.request(PlaneSubjects.drain(configuration.cluster, drone), request, timeout: .seconds(5))
        } catch {
            return .error(.gatewayTimeout, "Drone \(drone) of cluster \(configuration.cluster) did not answer the drain request (\(error)); is it running?")
        }
        logger.info("http.drain", metadata: ["plane.drone": "\(drone)", "plane.drain": "\(drain)"])
        return HTTPAPIResponse(status: .ok, json: .object(JSONObject([("drone", .string(drone.rawValue)), ("draining", .bool(drain))])))
    }

    func status(of backend: BackendID) async -> HTTPAPIResponse {
        do {
            guard let stored = try await messenger.jetStream.lastMessage(stream: PlaneSubjects.backendStatusStream, subject: PlaneSubjects.backendStatus(backend).subject) else {
                return .error(.notFound, "Backend \(backend) has no recorded state.", cors: true)
            }
            let message = try WireDecoder().decode(BackendStateMessage.self, from: stored.payload)
            return HTTPAPIResponse(status: .ok, json: Self.statusJSON(message), cors: true)
        } catch {
            return .error(.serviceUnavailable, "The backend_status stream cannot be read (\(error)).", cors: true)
        }
    }

    static func statusJSON(_ message: BackendStateMessage) -> JSONValue {
        .object(JSONObject([("state", .string(message.state.rawValue)), ("backend", .string(message.backend.rawValue)), ("time", .string(message.time.rfc3339))]))
    }

    /// Server-Sent Events: every state change (repeats of the same state dropped), from
    /// the stored history on (or after `after`, a `Last-Event-ID`), until a terminal state.
    /// Each event's `id` is its `backend_status` stream sequence.
    func streamEvents(of backend: BackendID, after: UInt64?, to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, client: SocketAddress?,
                      closed: EventLoopFuture<Void>) async throws {
        guard statusStreams.admit() else {
            recordLimit(HTTPAPIConfiguration.maxStatusStreamsKey, client: client)
            try await write(.error(.serviceUnavailable, "\(configuration.maxStatusStreams) status streams are open already ([http] max_status_streams); try again.",
                                   cors: true, extraHeaders: [("Retry-After", "5")]), to: outbound, keepAlive: false)
            return
        }
        defer { statusStreams.release() }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/event-stream")
        headers.add(name: "Cache-Control", value: "no-cache")
        headers.add(name: "Access-Control-Allow-Origin", value: "*")
        headers.add(name: "Connection", value: "close")
        try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
        // A client that saw the last event already, and it was terminal, gets the end at once
        // (nothing more will come).
        if let after, let stored = try? await messenger.jetStream.lastMessage(stream: PlaneSubjects.backendStatusStream, subject: PlaneSubjects.backendStatus(backend).subject),
           stored.streamSequence <= after, (try? WireDecoder().decode(BackendStateMessage.self, from: stored.payload))?.state.isTerminal == true {
            try await outbound.write(.end(nil))
            return
        }
        let history = try await messenger.backendStateHistory(of: backend, after: after)
        defer { history.stop() }
        // The loop below writes only when the backend's state changes, which may be never (an
        // unknown id, a backend Ready for days), so a client that goes would not end it: its
        // connection's close stops the history instead.
        closed.whenComplete { _ in history.stop() }
        var last: BackendState?
        for try await stored in history {
            guard case .success(let message) = stored.message, message.state != last else { continue }
            last = message.state
            let line = "id: \(stored.streamSequence)\ndata: " + String(decoding: JSONWriter.write(Self.statusJSON(message)), as: UTF8.self) + "\n\n"
            try await outbound.write(.body(.byteBuffer(ByteBuffer(string: line))))
            if message.state.isTerminal { break }
        }
        try await outbound.write(.end(nil))
    }

    /// A file of the dashboard, with headers that keep it to itself: its scripts from this
    /// origin only, no framing, no referrer.
    static func dashboardAsset(_ text: String, type: String) -> HTTPAPIResponse {
        HTTPAPIResponse(status: .ok, contentType: type, body: Array(text.utf8), extraHeaders: [
            ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
            ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-cache"),
        ])
    }

    /// `GET /dashboard/events`: the dashboard's snapshot now and again whenever it changes
    /// (checked every second; a comment every 15 s keeps proxies from closing a quiet
    /// stream). While a stream is open the controller reads `backend.*.stats` for the
    /// backends' idle times; without the right to (NATS permissions), idle times stay empty.
    func streamDashboard(to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>) async throws {
        guard dashboardStreams.admit() else {
            try await write(.error(.serviceUnavailable, "\(Self.maxDashboardStreams) dashboards are open already; close one.", extraHeaders: [("Retry-After", "10")]),
                            to: outbound, keepAlive: false)
            return
        }
        defer { dashboardStreams.release() }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/event-stream")
        headers.add(name: "Cache-Control", value: "no-store")
        headers.add(name: "Connection", value: "close")
        try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
        let idle = IdleSamples()
        let stats: PlaneSubscription<BackendStatsMessage, NullReply>?
        do {
            stats = try await messenger.subscribe(PlaneSubjects.backendStatsAll)
        } catch {
            logger.notice("dashboard.stats_unavailable", metadata: ["error": "\(error)"])
            stats = nil
        }
        let dashboard = dashboard
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let stats {
                group.addTask {
                    await withTaskCancellationHandler {
                        for await delivery in stats {
                            guard case .success(let message) = delivery.message, let seconds = message.idleSeconds else { continue }
                            let sample = DashboardSnapshot.IdleSample(seconds: seconds, received: .now())
                            idle.samples.withLock { samples in
                                // Anyone may publish stats: bounded, and pruned to Ready backends below.
                                if samples[message.backendID] != nil || samples.count < Self.maxIdleSamples { samples[message.backendID] = sample }
                            }
                        }
                    } onCancel: {
                        try? stats.unsubscribe()
                    }
                }
            }
            group.addTask {
                var last: [UInt8] = []
                var lastWrite = ContinuousClock.now
                while true {
                    let snapshot = dashboard(idle.samples.withLock { $0 })
                    let ready = Set(snapshot.backends.lazy.filter { $0.state == .ready }.map(\.backendID))
                    idle.samples.withLock { samples in samples = samples.filter { ready.contains($0.key) } }
                    let body = JSONWriter.write(snapshot.json(now: .now(), instant: .now))
                    if body != last {
                        var event = ByteBuffer(string: "data: ")
                        event.writeBytes(body)
                        event.writeString("\n\n")
                        try await outbound.write(.body(.byteBuffer(event)))
                        last = body
                        lastWrite = .now
                    } else if ContinuousClock.now - lastWrite >= .seconds(15) {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: ": keepalive\n\n"))))
                        lastWrite = .now
                    }
                    try await Task.sleep(for: .seconds(1))
                }
            }
            // The writer ends when the client goes (its write fails) or the server stops.
            defer { group.cancelAll() }
            _ = try await group.next()
        }
    }

    /// The idle times one dashboard stream collected from the drones' stats.
    final class IdleSamples: Sendable {
        let samples = Mutex<[BackendID: DashboardSnapshot.IdleSample]>([:])
    }

    func write(_ response: HTTPAPIResponse, to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, keepAlive: Bool) async throws {
        var headers = HTTPHeaders()
        if let contentType = response.contentType { headers.add(name: "Content-Type", value: contentType) }
        headers.add(name: "Content-Length", value: "\(response.body.count)")
        if response.cors { headers.add(name: "Access-Control-Allow-Origin", value: "*") }
        for (name, value) in response.extraHeaders { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers)))
        if !response.body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body)))) }
        try await outbound.write(.end(nil))
    }
}

/// A complete HTTP answer.
struct HTTPAPIResponse: Sendable {
    var status: HTTPResponseStatus
    var contentType: String?
    var body: [UInt8] = []
    var cors = false
    var extraHeaders: [(String, String)] = []

    init(status: HTTPResponseStatus, contentType: String? = nil, body: [UInt8] = [], cors: Bool = false, extraHeaders: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.cors = cors
        self.extraHeaders = extraHeaders
    }

    init(status: HTTPResponseStatus, json: JSONValue, cors: Bool = false) {
        self.init(status: status, contentType: "application/json", body: JSONWriter.write(json), cors: cors)
    }

    /// `{"error": message, "code": code}`.
    static func error(_ status: HTTPResponseStatus, _ message: String, code: String? = nil, cors: Bool = false,
                      extraHeaders: [(String, String)] = []) -> HTTPAPIResponse {
        var object = JSONObject()
        object["error"] = .string(message)
        object["code"] = .string(code ?? status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_"))
        var response = HTTPAPIResponse(status: status, json: .object(object), cors: cors)
        response.extraHeaders = extraHeaders
        return response
    }
}

import Foundation
