//! Closed-model journeys on goose: a fixed (or ramping) number of users, each running its
//! journey in a loop. Each sender becomes a goose scenario whose one transaction runs a whole
//! iteration (so variables flow from step to step), compiled at run time from the scenario
//! file. Goose times requests to the first byte; we record the full response in our own
//! metrics as well.

use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
use goose::goose::{
    GooseMethod, GooseRequest, GooseUser, Scenario, Transaction, TransactionFunction,
};
use goose::GooseAttack;

use crate::journey::{self, Journey, Prepared, Response, Transport, TransportError, Vars};
use crate::plan::Schedule;
use crate::stop::Stop;
use reports::Recorders;

/// Goose refused the plan; a harness error (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("goose: {0}")]
pub struct GooseFailed(pub String);

/// Above this many users one HTTP client is shared (NOTES: ~135 KB per client).
const SHARED_CLIENT_ABOVE: f64 = 1000.0;

/// Runs the closed-model journeys, `(journey, weight)`, under the `users` schedule.
pub async fn run(
    users: &Schedule,
    journeys: Vec<(Arc<Journey>, u32)>,
    base_url: &str,
    insecure: bool,
    recorders: Arc<Recorders>,
    stop: Stop,
) -> Result<(), GooseFailed> {
    let err = |e: goose::GooseError| GooseFailed(format!("{e:?}"));
    let plan: String = users
        .goose_steps()
        .iter()
        .map(|(u, ms)| format!("{u},{}s", ms.div_ceil(1000)))
        .collect::<Vec<_>>()
        .join(";");
    let mut attack =
        GooseAttack::initialize_with_config(GooseConfiguration::default()).map_err(err)?;
    attack = *attack
        .set_default(GooseDefault::Host, base_url)
        .map_err(err)?;
    attack = *attack
        .set_default(GooseDefault::TestPlan, plan.as_str())
        .map_err(err)?;
    // loadgen records every request in its own metrics (full response time, HdrHistogram);
    // goose's per-request metric, cloned and sent to its aggregator, would be work for nothing.
    for key in [
        GooseDefault::NoTelnet,
        GooseDefault::NoMetrics,
        GooseDefault::NoPrintMetrics,
        GooseDefault::NoErrorSummary,
    ] {
        attack = *attack.set_default(key, true).map_err(err)?;
    }
    if insecure {
        attack = *attack
            .set_default(GooseDefault::AcceptInvalidCerts, true)
            .map_err(err)?;
    }
    if users.peak() > SHARED_CLIENT_ABOVE {
        let builder = goose::client::GooseClientBuilder::new()
            .without_cookies()
            .accept_invalid_certs(insecure);
        attack = attack
            .set_client_builder_without_cookies(builder)
            .map_err(err)?;
    }
    for (journey, weight) in journeys {
        let name = journey.name().to_string();
        let scenario = Scenario::new(&name)
            .set_weight(weight as usize)
            .map_err(err)?
            .register_transaction(
                Transaction::new(iteration_fn(journey, recorders.clone(), stop.clone()))
                    .set_name(&name),
            );
        attack = attack.register_scenario(scenario);
    }
    Box::pin(attack.execute()).await.map_err(err)?;
    Ok(())
}

/// Per-user state kept in goose's session data.
#[derive(Clone)]
struct Session {
    vars: Option<Vars>,
}

fn iteration_fn(
    journey: Arc<Journey>,
    recorders: Arc<Recorders>,
    stop: Stop,
) -> TransactionFunction {
    Arc::new(move |user: &mut GooseUser| {
        let journey = journey.clone();
        let recorders = recorders.clone();
        let stop = stop.clone();
        Box::pin(async move {
            // The user's variables live in its session data between iterations; they are
            // taken out for the iteration (the transport borrows the user) and put back.
            let mut vars = match user.get_session_data_mut::<Session>() {
                Some(s) => s.vars.take(),
                None => None,
            }
            .unwrap_or_else(|| journey.vars(user.weighted_users_index as u64 + 1));
            let recorder = recorders.for_thread();
            if !stop.is_stopped() {
                let mut transport = GooseTransport { user };
                journey::run_iteration(
                    &journey,
                    &mut transport,
                    &mut vars,
                    &recorder,
                    Instant::now(),
                    &stop,
                )
                .await;
                journey::think(journey.sender.think.as_ref(), &stop).await;
            } else {
                // Goose tells its users to exit from its own task: yield to it rather than
                // spin through empty transactions.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            match user.get_session_data_mut::<Session>() {
                Some(s) => s.vars = Some(vars),
                None => user.set_session_data(Session { vars: Some(vars) }),
            }
            Ok(())
        })
    })
}

struct GooseTransport<'a> {
    user: &'a mut GooseUser,
}

fn goose_method(m: &http::Method) -> GooseMethod {
    match *m {
        http::Method::POST => GooseMethod::Post,
        http::Method::PUT => GooseMethod::Put,
        http::Method::PATCH => GooseMethod::Patch,
        http::Method::DELETE => GooseMethod::Delete,
        http::Method::HEAD => GooseMethod::Head,
        _ => GooseMethod::Get,
    }
}

impl Transport for GooseTransport<'_> {
    async fn send(
        &mut self,
        name: &str,
        req: Prepared,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        let method = goose_method(&req.method);
        let mut rb = self
            .user
            .get_request_builder(&method, &req.url)
            .map_err(|e| TransportError::BadUrl(format!("{}: {e}", req.url)))?
            .timeout(timeout);
        for (n, v) in &req.headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        if let Some(body) = req.body {
            rb = rb.body(body);
        }
        let request = GooseRequest::builder()
            .method(method)
            .name(name)
            .set_request_builder(rb)
            .build();
        let goose_response = self
            .user
            .request(request)
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let response = goose_response.response.map_err(classify)?;
        let mut response = response;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let body = response.bytes().await.map_err(classify)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn classify(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        TransportError::Connect(e.to_string())
    } else {
        TransportError::Io(e.to_string())
    }
}
