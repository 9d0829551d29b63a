// Package proof measures the bridge's speed and robustness claims against the
// EM340 simulator and a real Mosquitto: the code behind em340-bench and the soak.
package proof
