import ContainerRuntime
import Logging
import PlaneCore
import PlaneMessaging
import PlaneProxy

/// What every backend supervisor of one drone shares.
struct AgentContext: Sendable {
    let droneID: DroneID
    let cluster: ClusterName
    let configuration: AgentConfiguration
    let runtime: any ContainerRuntime
    let store: DroneStore
    let outbox: StateOutbox
    let routes: RouteTable
    let messenger: PlaneMessenger
    /// The address other machines reach this drone at (DNS A records).
    let publicIP: String
    /// How often stats are sampled and DNS records refreshed (10 s and 50 s in production).
    let statsInterval: Duration
    let dnsInterval: Duration
    let logger: Logger
}
