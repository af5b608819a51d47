// The built-in Kubernetes hook of a plan (`{kubernetes: {context, namespace, selector}}`):
// quiesce scales the Deployments and StatefulSets the label selector picks to 0 replicas and
// waits until their pods are gone; start and resume scale them back. Everything goes through
// kubectl (the operator's kubeconfig and contexts, no client library to keep in step with the
// API server).
//
// Replica bookkeeping, so that a coordinator killed half-way never loses the count:
//   - before an object is scaled down its replicas are saved in the plan's journal and as the
//     annotation ferry.io/original-replicas on the object; an object already at 0 that carries
//     the annotation (a quiesce that was cut short) keeps the annotated count;
//   - restore touches an object only while it is still at 0 (someone who scaled it since wins),
//     to the journal's count for it (or for the same kind and name in another context: the
//     source's count, for the target's copy of the app), else its annotation; then removes the
//     annotation and waits for `kubectl rollout status`.
// Threading: blocking, on the coordinator's thread.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "coordinator/console.h"
#include "coordinator/journal.h"
#include "coordinator/plan.h"

namespace ferry {

inline constexpr const char* kOriginalReplicasAnnotation = "ferry.io/original-replicas";

// What a Kubernetes hook does with the workloads its selector picks:
//   kQuiesce        scale to 0, the count saved in the journal and an annotation, and wait until
//                   no pod is left (quiesce_source; stop_target);
//   kRestore        scale what is at 0 back to its saved count: its own, else the same workload's
//                   in another context (start_target gets the source's), else the annotation;
//   kRehearseStart  the rehearsal's start on the target: scale what is at 0 to the count the same
//                   workload runs with now in the source (`source`: the quiesce_source hook), else
//                   a saved one; nothing saved or annotated, so the cutover is not changed by it;
//   kRehearseStop   the rehearsal's stop: scale back to 0 and wait, saving nothing (the target's
//                   workloads were at 0 before; their count comes from the source at the cutover).
enum class KubeAction { kQuiesce, kRestore, kRehearseStart, kRehearseStop };

// Runs the hook within `hook.timeout_s`; the error names the hook, the object and kubectl's
// own message.
// Each object scaled (or left alone) is told to `console` ("hook NAME: deployment/db scaled
// from 2 to 0 replicas").
Status RunKubernetesHook(const std::string& name, const HookSpec& hook, KubeAction action,
                         Journal& journal, Console& console, const HookSpec* source = nullptr);

}  // namespace ferry
