/// Every subject of the Plane v0.3.10 wire protocol (spec §2.2), typed with what travels on
/// it. `{cluster_s}` is `ClusterName.subjectForm` (`plane.test` → `plane_test`).
public enum PlaneSubjects {
    // MARK: Scheduling

    /// `cluster.{cluster_s}.schedule`: client → controller scheduler.
    public static func schedule(_ cluster: ClusterName) -> RequestSubject<ScheduleRequest, ScheduleResponse> {
        .init("cluster.\(cluster.subjectForm).schedule")
    }
    /// `cluster.*.schedule`: what the scheduler subscribes to (in a queue group).
    public static let scheduleAll = SubjectPattern<ScheduleRequest, ScheduleResponse>("cluster.*.schedule")

    /// `drone.{drone_id}.spawn`: controller → drone; reply `true`/`false`.
    public static func spawn(_ drone: DroneID) -> RequestSubject<SpawnRequest, Bool> {
        .init("drone.\(drone.rawValue).spawn")
    }

    // MARK: Drone liveness

    /// `drone.{drone_id}.status`: heartbeat every 4 s.
    public static func droneStatus(_ drone: DroneID) -> PublishSubject<DroneStatusMessage> {
        .init("drone.\(drone.rawValue).status")
    }
    /// `drone.*.status`.
    public static let droneStatusAll = SubjectPattern<DroneStatusMessage, NullReply>("drone.*.status")

    /// `drone.register`: once at agent start.
    public static let droneRegister = PublishSubject<DroneConnectRequest>("drone.register")
    public static let droneRegisterPattern = SubjectPattern<DroneConnectRequest, NullReply>("drone.register")

    /// `cluster.{cluster_s}.drone.{drone_id}.drain`; reply `null`.
    public static func drain(_ cluster: ClusterName, _ drone: DroneID) -> RequestSubject<DrainDrone, NullReply> {
        .init("cluster.\(cluster.subjectForm).drone.\(drone.rawValue).drain")
    }

    /// `cluster.{cluster_s}.drone.{drone_id}.lease` (extension): a drone renews the lease of
    /// its lock-holding backends; one controller (queue group) answers.
    public static func lease(_ cluster: ClusterName, _ drone: DroneID) -> RequestSubject<DroneLeaseRequest, DroneLeaseGrant> {
        .init("cluster.\(cluster.subjectForm).drone.\(drone.rawValue).lease")
    }

    public static let leaseAll = SubjectPattern<DroneLeaseRequest, DroneLeaseGrant>("cluster.*.drone.*.lease")

    // MARK: Backends

    /// `cluster.{cluster_s}.backend.{backend_id}.terminate`; reply `null`.
    public static func terminate(_ cluster: ClusterName, _ backend: BackendID) -> RequestSubject<TerminationRequest, NullReply> {
        .init("cluster.\(cluster.subjectForm).backend.\(backend.rawValue).terminate")
    }
    /// `cluster.{cluster_s}.backend.{backend_id}.token` (extension): grant or revoke a
    /// per-connect access token; the drone running the backend replies `true`.
    public static func accessToken(_ cluster: ClusterName, _ backend: BackendID) -> RequestSubject<BackendAccessTokenMessage, Bool> {
        .init("cluster.\(cluster.subjectForm).backend.\(backend.rawValue).token")
    }
    /// `cluster.{cluster_s}.backend.*.token`: what each drone of the cluster subscribes to.
    public static func accessTokenAll(_ cluster: ClusterName) -> SubjectPattern<BackendAccessTokenMessage, Bool> {
        .init("cluster.\(cluster.subjectForm).backend.*.token")
    }
    /// `cluster.{cluster_s}.backend.*.terminate`: what each drone of the cluster subscribes to.
    public static func terminateAll(_ cluster: ClusterName) -> SubjectPattern<TerminationRequest, NullReply> {
        .init("cluster.\(cluster.subjectForm).backend.*.terminate")
    }

    /// `cluster.{cluster_s}.backend.{backend_id}.status`: drone → controller relay; reply `null`.
    public static func updateBackendState(_ cluster: ClusterName, _ backend: BackendID) -> RequestSubject<UpdateBackendStateMessage, NullReply> {
        .init("cluster.\(cluster.subjectForm).backend.\(backend.rawValue).status")
    }
    /// `cluster.*.backend.*.status`: what the state relay subscribes to (in a queue group).
    public static let updateBackendStateAll = SubjectPattern<UpdateBackendStateMessage, NullReply>("cluster.*.backend.*.status")

    /// `backend.{backend_id}.status`: JetStream subject of stream `backend_status`.
    public static func backendStatus(_ backend: BackendID) -> PublishSubject<BackendStateMessage> {
        .init("backend.\(backend.rawValue).status")
    }
    /// `backend.*.status`: the subjects of stream `backend_status`.
    public static let backendStatusAll = SubjectPattern<BackendStateMessage, NullReply>("backend.*.status")
    /// The JetStream stream holding every backend state change.
    public static let backendStatusStream = "backend_status"

    /// `backend.{backend_id}.log`.
    public static func backendLog(_ backend: BackendID) -> PublishSubject<DroneLogMessage> {
        .init("backend.\(backend.rawValue).log")
    }
    public static let backendLogAll = SubjectPattern<DroneLogMessage, NullReply>("backend.*.log")

    /// `backend.{backend_id}.log.history` (our addition): the backend's recent output from
    /// the drone running it. Four tokens, so `backend.*.log` subscribers do not see it.
    public static func backendLogHistory(_ backend: BackendID) -> RequestSubject<BackendLogHistoryRequest, [DroneLogMessage]> {
        .init("backend.\(backend.rawValue).log.history")
    }

    /// `backend.{backend_id}.stats`, about every 10 s.
    public static func backendStats(_ backend: BackendID) -> PublishSubject<BackendStatsMessage> {
        .init("backend.\(backend.rawValue).stats")
    }
    public static let backendStatsAll = SubjectPattern<BackendStatsMessage, NullReply>("backend.*.stats")

    // MARK: DNS and ACME

    /// `cluster.{cluster_s}.dns.{A|TXT}`.
    public static func dns(_ cluster: ClusterName, _ kind: DnsRecordType) -> PublishSubject<SetDnsRecord> {
        .init("cluster.\(cluster.subjectForm).dns.\(kind.rawValue)")
    }
    /// `cluster.*.dns.*`: what the DNS server subscribes to.
    public static let dnsAll = SubjectPattern<SetDnsRecord, NullReply>("cluster.*.dns.*")

    /// `acme.set_dns_record`: drone cert refresher → controller; reply `true` when accepted.
    public static let acmeSetDnsRecord = RequestSubject<SetAcmeDnsRecord, Bool>("acme.set_dns_record")
    public static let acmeSetDnsRecordPattern = SubjectPattern<SetAcmeDnsRecord, Bool>("acme.set_dns_record")

    // MARK: Component logs

    public static let controllerLogs = PublishSubject<LogMessage>("logs.controller")
    public static func droneLogs(_ drone: DroneID) -> PublishSubject<LogMessage> {
        .init("logs.drone.\(drone.rawValue)")
    }

    // MARK: Reading subjects

    /// The subject's token at `index` (`cluster.plane_test.schedule`, 1 → `plane_test`),
    /// nil when it has fewer tokens.
    public static func token(_ index: Int, of subject: String) -> Substring? {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        return tokens.indices.contains(index) ? tokens[index] : nil
    }
}
