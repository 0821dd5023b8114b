extension ServerProcess {
    /// Whether the process is a task worker.
    var isTaskWorker: Bool {
        if case .taskWorker = role { return true }
        return false
    }
}
