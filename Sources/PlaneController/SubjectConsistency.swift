import PlaneCore

/// Whether a message names the same cluster, backend or drone in its payload as in the
/// subject it arrived on. NATS permissions are granted per subject (docs/security.md, "NATS
/// permissions"), so a payload that names another cluster than its subject is a peer
/// reaching beyond what it may publish; the controller acts on neither. v0.3.10 trusted
/// the payload alone.
enum SubjectConsistency {
    /// `cluster.{cluster_s}.schedule`.
    static func problem(schedule request: ScheduleRequest, subject: String) -> String? {
        cluster(request.cluster, at: 1, of: subject)
    }

    /// `cluster.{cluster_s}.backend.{backend_id}.status`.
    static func problem(update: UpdateBackendStateMessage, subject: String) -> String? {
        if let problem = cluster(update.cluster, at: 1, of: subject) { return problem }
        guard PlaneSubjects.token(3, of: subject) == update.backend.rawValue[...] else {
            return "the payload's backend \(update.backend) is not the subject's"
        }
        return nil
    }

    /// `drone.{drone_id}.status`.
    static func problem(heartbeat: DroneStatusMessage, subject: String) -> String? {
        guard PlaneSubjects.token(1, of: subject) == heartbeat.droneID.rawValue[...] else {
            return "the payload's drone \(heartbeat.droneID) is not the subject's"
        }
        return nil
    }

    /// `cluster.{cluster_s}.drone.{drone_id}.lease`.
    static func problem(lease request: DroneLeaseRequest, subject: String) -> String? {
        if let problem = cluster(request.cluster, at: 1, of: subject) { return problem }
        guard PlaneSubjects.token(3, of: subject) == request.drone.rawValue[...] else {
            return "the payload's drone \(request.drone) is not the subject's"
        }
        return nil
    }

    /// `cluster.{cluster_s}.dns.{A|TXT}`.
    static func problem(record: SetDnsRecord, subject: String) -> String? {
        if let problem = cluster(record.cluster, at: 1, of: subject) { return problem }
        guard PlaneSubjects.token(3, of: subject) == record.kind.rawValue[...] else {
            return "the payload's record type \(record.kind.rawValue) is not the subject's"
        }
        return nil
    }

    private static func cluster(_ cluster: ClusterName, at index: Int, of subject: String) -> String? {
        guard PlaneSubjects.token(index, of: subject) == cluster.subjectForm[...] else {
            return "the payload's cluster \(cluster) is not the subject's"
        }
        return nil
    }
}
