/// Every metric of the controller and the drone (docs/operations.md, "Metrics", lists the
/// same; a test keeps the two equal).
public enum MetricCatalog {
    /// Upper bounds (seconds) of the latency histograms.
    public static let latencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    // MARK: Controller

    public static let scheduleRequests = MetricDefinition("plane_schedule_requests_total", .counter, labels: ["result"],
                                                          help: "Schedule requests answered, by result.")
    public static let scheduleLatency = MetricDefinition("plane_schedule_latency_seconds", .histogram(bucketSeconds: latencyBuckets),
                                                         help: "Time to answer a schedule request.")
    public static let stateUpdatesRelayed = MetricDefinition("plane_state_updates_relayed_total", .counter,
                                                             help: "Backend state updates written to the backend_status stream.")
    public static let stateUpdatesRejected = MetricDefinition(
        "plane_state_updates_rejected_total", .counter,
        help: "Backend state updates not stored: their payload names another cluster or backend than their subject, the backend is another cluster's, or another drone than the backend's sent it.")
    public static let liveDrones = MetricDefinition("plane_live_drones", .gauge, help: "Drones heard from within the drone timeout.")
    public static let backends = MetricDefinition("plane_backends", .gauge, labels: ["state"], help: "Backends known to the controller, by state.")
    public static let dnsQueries = MetricDefinition("plane_dns_queries_total", .counter, labels: ["result"], help: "DNS queries, by outcome.")

    // MARK: Both

    public static let inputLimitHits = MetricDefinition("plane_input_limit_hits_total", .counter, labels: ["limit"],
                                                        help: "Inputs refused or cut because they exceeded a limit, by the limit's configuration key.")

    // MARK: Drone: proxy

    public static let proxyResponses = MetricDefinition("plane_proxy_responses_total", .counter, labels: ["class"],
                                                        help: "Responses sent to clients, by status class.")
    public static let proxyUpstreamLatency = MetricDefinition(
        "plane_proxy_upstream_latency_seconds", .histogram(bucketSeconds: latencyBuckets), labels: ["loop"],
        help: "Time from sending a request to a backend to its response head, per proxy event loop (sum by le for the drone).")
    public static let proxyUpgradedConnections = MetricDefinition("plane_proxy_upgraded_connections", .gauge,
                                                                  help: "Open upgraded (WebSocket) connections.")
    public static let proxyUpgradedConnectionsOpened = MetricDefinition("plane_proxy_upgraded_connections_total", .counter,
                                                                        help: "Upgraded (WebSocket) connections opened.")
    public static let proxyBytes = MetricDefinition("plane_proxy_bytes_total", .counter, labels: ["direction"],
                                                    help: "Bytes read from clients (in) and written to them (out): HTTP heads and bodies, upgraded streams.")
    public static let proxyHeldRequests = MetricDefinition("plane_proxy_held_requests_total", .counter, labels: ["outcome"],
                                                           help: "Requests held while their backend was starting, by how the hold ended.")
    public static let proxyHeldRequestsWaiting = MetricDefinition("plane_proxy_held_requests", .gauge,
                                                                  help: "Requests waiting now for their backend to become Ready.")
    public static let proxyConnections = MetricDefinition("plane_proxy_connections", .gauge,
                                                          help: "Client connections open now (at most [proxy] max_connections).")

    // MARK: Drone: certificates

    public static let certificateExpiry = MetricDefinition("plane_certificate_expiry_timestamp_seconds", .gauge,
                                                           help: "When the installed certificate expires (Unix time); absent while there is none.")
    public static let acmeRenewalAttempts = MetricDefinition("plane_acme_renewal_attempts_total", .counter, help: "Certificate orders this drone started.")
    public static let acmeRenewalFailures = MetricDefinition("plane_acme_renewal_failures_total", .counter, help: "Certificate orders that failed.")
    public static let acmeCertificatesFromFleet = MetricDefinition("plane_acme_certificates_from_fleet_total", .counter,
                                                                   help: "Certificates installed from another drone's order.")

    // MARK: Drone: warm pools

    public static let warmPoolBackends = MetricDefinition("plane_warm_pool_backends", .gauge, labels: ["pool"],
                                                          help: "Pre-started backends ready per warm pool.")
    public static let warmPoolHits = MetricDefinition("plane_warm_pool_hits_total", .counter, labels: ["pool"],
                                                      help: "Spawns served by a pre-started backend of their warm pool.")
    public static let warmPoolMisses = MetricDefinition("plane_warm_pool_misses_total", .counter, labels: ["pool"],
                                                        help: "Spawns naming a warm pool that found no matching pre-started backend and started one.")

    public static let all: [MetricDefinition] = [
        scheduleRequests, scheduleLatency, stateUpdatesRelayed, stateUpdatesRejected, liveDrones, backends, dnsQueries, inputLimitHits,
        proxyResponses, proxyUpstreamLatency, proxyUpgradedConnections, proxyUpgradedConnectionsOpened, proxyBytes, proxyHeldRequests, proxyHeldRequestsWaiting, proxyConnections,
        certificateExpiry, acmeRenewalAttempts, acmeRenewalFailures, acmeCertificatesFromFleet,
        warmPoolBackends, warmPoolHits, warmPoolMisses,
    ]

    static let byName: [String: MetricDefinition] = Dictionary(all.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })

    public static func definition(named name: String) -> MetricDefinition? { byName[name] }
}
