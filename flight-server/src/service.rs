//! The Flight SQL service: statements, prepared statements and catalog commands over the
//! query engine. It keeps no per-client state: tickets and prepared-statement handles carry
//! the query (see `handle`), and credentials are checked before any method here runs (see
//! `auth::RequireAuth`), except the handshake, which issues them.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionEndSavepointRequest, ActionEndTransactionRequest, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::Action;
use arrow_flight::{
    flight_service_server::FlightService, BasicAuth, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use qilin_cluster::metrics;
use qilin_cluster::notify::{self, NOTIFY_ACTION, SIGNATURE_HEADER};
use qilin_engine::config::Config;
use qilin_engine::error::ErrorKind;
use qilin_engine::model::SegmentRange;
use qilin_engine::query::{BatchStream, QueryEngine};
use qilin_engine::security::audit::Outcome as Audited;
use qilin_engine::security::Access;
use qilin_jobs::{Job, JobEngine};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status, Streaming};

use crate::admin::{self, Admin};
use crate::admin_security;
use crate::auth::{AuthenticatedUser, Authenticator};
use crate::guard::{self, Refusal};
use crate::handle::StatementHandle;
use crate::metadata;
use crate::sql_info::{SQL_INFO, XDBC_TYPE_INFO};
use crate::status;
use crate::warm::Warmer;
use crate::wire::{self, client_schema};

/// How long a query waits for one of the `kylin.query.max-concurrent` slots before the
/// client is told to back off (ResourceExhausted) rather than queue without bound.
const QUERY_SLOT_WAIT: Duration = Duration::from_secs(2);

type DoGetStream = <QilinFlightSql as FlightService>::DoGetStream;

pub struct QilinFlightSql {
    engine: Arc<QueryEngine>,
    auth: Arc<Authenticator>,
    query_slots: Arc<Semaphore>,
    max_concurrent: usize,
    /// Writes build jobs into the store (`qilin.build`); the job engine runs them.
    jobs: JobEngine,
    /// Checks cluster notifications (`kylin.security.token-secret`).
    cluster_secret: Vec<u8>,
    /// `kylin.server.tls.client-ca` set: a notification must come with a node certificate.
    notify_needs_node_cert: bool,
    /// Catalog actions (`qilin.project.*`, `qilin.model.*`, `qilin.cube.*`, `qilin.table.*`).
    admin: Arc<Admin>,
    /// Woken after a notification reloaded the catalog (new segments may be READY).
    warmer: Warmer,
}

/// `DoAction` type that submits a build job: body `{"cube": C, "start": D, "end": D}`
/// (dates `YYYY-MM-DD`, omitted for unpartitioned cubes); the result is the job as JSON.
pub const BUILD_ACTION: &str = "qilin.build";

/// The body of a [`BUILD_ACTION`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildRequest {
    cube: String,
    start: Option<String>,
    end: Option<String>,
}

impl QilinFlightSql {
    /// `own_addr`: this server's `host:port` as `kylin.rest.servers` lists it.
    pub fn new(
        engine: Arc<QueryEngine>,
        auth: Arc<Authenticator>,
        jobs: JobEngine,
        config: &Config,
        own_addr: &str,
        warmer: Warmer,
    ) -> Self {
        let admin = Arc::new(Admin::new(
            config,
            jobs.metadata().clone(),
            jobs.segment_store().clone(),
            engine.clone(),
            auth.clone(),
            own_addr,
        ));
        QilinFlightSql {
            admin,
            warmer,
            engine,
            auth,
            query_slots: Arc::new(Semaphore::new(config.query.max_concurrent)),
            max_concurrent: config.query.max_concurrent,
            jobs,
            cluster_secret: config.security.token_secret.clone().into_bytes(),
            notify_needs_node_cert: config
                .cluster
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca.is_some()),
        }
    }

    /// The `kylin.query.max-concurrent` slots, for the HTTP query endpoint to share.
    pub fn query_slots(&self) -> Arc<Semaphore> {
        self.query_slots.clone()
    }

    /// What the caller of `request` may see and do, resolved from the current security rules
    /// on every call (so a revoked grant or a disabled user takes effect at once).
    fn access<T>(&self, request: &Request<T>) -> Result<Access, Status> {
        let user = request
            .extensions()
            .get::<AuthenticatedUser>()
            .ok_or_else(|| Status::unauthenticated("no authenticated user for this call"))?;
        self.auth
            .access(&user.0)
            .map_err(crate::auth::unauthenticated)
    }

    /// Audits a query refused for what it reads (a denied table or column).
    fn audit_query(&self, access: &Access, sql: &str, e: &qilin_engine::Error) {
        if e.kind() == ErrorKind::PermissionDenied {
            self.auth.audit().record(
                &access.user,
                "query",
                &one_line(sql),
                Audited::Denied,
                e.to_string(),
            );
        }
    }

    /// A cluster notification: checked against the cluster secret, then the catalog is
    /// reloaded if the store moved on (which also drops cached results), and the security
    /// rules with it (a revoked key stops working here too).
    async fn notified(&self, request: Request<Action>) -> Result<(), Status> {
        // Under mutual TLS the cluster secret alone is not enough: the sender must be a node
        // (tonic has verified the certificate against the client CA during the handshake).
        if self.notify_needs_node_cert && request.peer_certs().is_none_or(|c| c.is_empty()) {
            metrics::global().notification_received(false);
            log::warn!("refused a notification without a node certificate");
            return Err(Status::permission_denied(
                "a notification must come with a node certificate signed by \
                 kylin.server.tls.client-ca",
            ));
        }
        let signature = request
            .metadata()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let n = match notify::verify(
            &self.cluster_secret,
            &request.get_ref().body,
            signature.as_deref(),
        ) {
            Ok(n) => n,
            Err(refusal) => {
                metrics::global().notification_received(false);
                log::warn!("refused a notification: {refusal}");
                return Err(Status::permission_denied(refusal.to_string()));
            }
        };
        let (engine, auth) = (self.engine.clone(), self.auth.clone());
        let reloaded = tokio::task::spawn_blocking(move || {
            auth.refresh();
            engine.refresh()
        })
        .await
        .map_err(|e| status::internal("reload task", e))?
        .map_err(|e| status::from_engine(&e))?;
        if reloaded {
            metrics::global().reload();
            self.warmer.wake();
        }
        // Counted once handled: whoever sees the count can rely on the reload having happened.
        metrics::global().notification_received(true);
        log::info!(
            "notified by {} ({}, store version {}){}",
            n.from,
            n.what,
            n.store_version,
            if reloaded { "; reloaded" } else { "" }
        );
        Ok(())
    }

    /// Writes a build job into the store; the cluster's job engine picks it up. The caller
    /// needs OPERATION in the cube's project.
    async fn submit_build(&self, request: Request<Action>, access: &Access) -> Result<Job, Status> {
        let raw = request.get_ref().body.clone();
        let body: BuildRequest =
            serde_json::from_slice(&raw).map_err(|e| status::bad_request("qilin.build body", e))?;
        let audit = |outcome: Audited, detail: String| {
            self.auth.audit().record(
                &access.user,
                admin::audit_name(BUILD_ACTION),
                &guard::target(BUILD_ACTION, &raw),
                outcome,
                detail,
            )
        };
        let (meta, who, bytes) = (self.jobs.metadata().clone(), access.clone(), raw.clone());
        let checked = tokio::task::spawn_blocking(move || {
            guard::check_action(&meta, &who, BUILD_ACTION, &bytes)
        })
        .await
        .map_err(|e| status::internal("permission check task", e))?;
        match checked {
            Ok(()) => {}
            Err(Refusal::Denied(e)) => {
                log::info!("user {}: refused a build: {e}", access.user);
                audit(Audited::Denied, e.to_string());
                return Err(status::from_engine(&e));
            }
            Err(Refusal::Failed(e)) => {
                audit(Audited::Failed, e.to_string());
                return Err(status::from_engine(&e));
            }
        }
        let range = match (&body.start, &body.end) {
            (Some(s), Some(e)) => {
                Some(SegmentRange::parse(s, e).map_err(|e| status::from_engine(&e))?)
            }
            (None, None) => None,
            _ => {
                return Err(Status::invalid_argument(
                    "qilin.build: give both start and end, or neither",
                ))
            }
        };
        let jobs = self.jobs.clone();
        let cube = body.cube.clone();
        let submitted = tokio::task::spawn_blocking(move || jobs.submit_build(&cube, range))
            .await
            .map_err(|e| status::internal("submit task", e))?
            .map_err(|e| {
                audit(Audited::Failed, e.to_string());
                status::from_engine(&e)
            })?;
        let user = &access.user;
        let job = submitted.job().clone();
        audit(
            Audited::Ok,
            format!("job {} (build {})", job.id, job.segment_name),
        );
        log::info!(
            "user {user}: submitted job {} (build {} of cube {})",
            job.id,
            job.segment_name,
            job.cube
        );
        Ok(job)
    }

    /// FlightInfo for a query: its result schema (planned, not run) and one endpoint whose
    /// ticket carries the query, served by whichever instance receives the DoGet.
    async fn statement_info(
        &self,
        handle: StatementHandle,
        descriptor: FlightDescriptor,
        access: &Access,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self
            .engine
            .prepare_as(access, &handle.sql)
            .await
            .map_err(|e| {
                self.audit_query(access, &handle.sql, &e);
                status::from_engine(&e)
            })?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode()?,
        };
        let info = FlightInfo::new()
            .try_with_schema(&client_schema(&prepared.schema))
            .map_err(|e| status::internal("encoding the result schema", e))?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_descriptor(descriptor)
            .with_ordered(true)
            .with_total_records(-1)
            .with_total_bytes(-1);
        Ok(Response::new(info))
    }

    /// Runs a query and streams its result as it is computed. The query holds one of the
    /// concurrency slots until its stream ends (or the client goes away, which stops it);
    /// its log line and metrics are written then.
    async fn run(
        &self,
        handle: StatementHandle,
        access: &Access,
    ) -> Result<Response<DoGetStream>, Status> {
        let permit =
            tokio::time::timeout(QUERY_SLOT_WAIT, self.query_slots.clone().acquire_owned())
                .await
                .map_err(|_| {
                    metrics::global().query_finished(Duration::ZERO, "rejected");
                    Status::resource_exhausted(format!(
                        "server busy: {} queries running (kylin.query.max-concurrent); retry later",
                        self.max_concurrent
                    ))
                })?
                .map_err(|_| Status::unavailable("server shutting down"))?;
        let started = Instant::now();
        let params = handle.params.as_ref().filter(|p| p.num_rows() > 0);
        let user = access.user.clone();
        match self
            .engine
            .execute_stream_as(access, &handle.sql, params)
            .await
        {
            Ok(out) => {
                if out.cached {
                    metrics::global().cache_hit()
                } else {
                    metrics::global().cache_miss()
                }
                let run = QueryRun {
                    permit: Some(permit),
                    started,
                    rows: 0,
                    cached: out.cached,
                    user,
                    sql: one_line(&handle.sql),
                };
                let batches = Box::pin(Tracked {
                    inner: out.batches,
                    run,
                });
                Ok(Response::new(wire::encode_stream(&out.schema, batches)))
            }
            Err(e) => {
                metrics::global().query_finished(started.elapsed(), "error");
                log::info!("user {user}: query failed: {e}: {}", one_line(&handle.sql));
                self.audit_query(access, &handle.sql, &e);
                Err(status::from_engine(&e))
            }
        }
    }

    /// FlightInfo for a catalog command: its fixed schema and a ticket that is the command
    /// itself, so the trait's DoGet dispatch routes it back to the matching `do_get_*`.
    fn command_info(
        &self,
        cmd: impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = Ticket::new(cmd.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| status::internal("encoding a schema", e))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_total_bytes(-1);
        Ok(Response::new(info))
    }
}

/// A running query's bookkeeping: its concurrency slot, and what is logged and counted when
/// its stream is dropped (ended, failed, or abandoned by the client).
struct QueryRun {
    /// Released when the query finishes.
    permit: Option<OwnedSemaphorePermit>,
    started: Instant,
    rows: usize,
    cached: bool,
    user: String,
    sql: String,
}

impl QueryRun {
    /// Logs and counts the query's end (once), before the client sees it, and frees its slot.
    /// `None`: the client went away before the end.
    fn finish(&mut self, outcome: Option<Result<(), String>>) {
        if self.permit.take().is_none() {
            return;
        }
        let elapsed = self.started.elapsed();
        let (user, sql, rows, ms) = (&self.user, &self.sql, self.rows, elapsed.as_millis());
        match outcome {
            Some(Ok(())) => {
                metrics::global().query_finished(elapsed, "ok");
                let cached = if self.cached { " (cached)" } else { "" };
                log::info!("user {user}: {rows} rows in {ms} ms{cached}: {sql}");
            }
            Some(Err(e)) => {
                metrics::global().query_finished(elapsed, "error");
                log::info!("user {user}: query failed after {rows} rows in {ms} ms: {e}: {sql}");
            }
            None => {
                metrics::global().query_finished(elapsed, "cancelled");
                log::info!(
                    "user {user}: client stopped reading after {rows} rows in {ms} ms: {sql}"
                );
            }
        }
    }
}

impl Drop for QueryRun {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// A result stream that keeps its [`QueryRun`] up to date.
struct Tracked {
    inner: BatchStream,
    run: QueryRun,
}

impl Stream for Tracked {
    type Item = qilin_engine::Result<RecordBatch>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = futures::ready!(this.inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(b)) => this.run.rows += b.num_rows(),
            Some(Err(e)) => this.run.finish(Some(Err(e.to_string()))),
            None => this.run.finish(Some(Ok(()))),
        }
        std::task::Poll::Ready(item)
    }
}

/// A batch as a DoGet response.
fn batch_response(batch: RecordBatch) -> Result<Response<DoGetStream>, Status> {
    Ok(Response::new(wire::encode_result(
        &batch.schema(),
        vec![batch],
    )))
}

/// A schema in the IPC form Flight SQL puts in prepared-statement results.
fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let options = IpcWriteOptions::default();
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &options)
        .try_into()
        .map_err(|e| status::internal("encoding a schema", e))?;
    Ok(bytes)
}

/// SQL on one line, shortened, for logs.
fn one_line(sql: &str) -> String {
    let s: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

fn read_only(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported: Qilin answers queries only (cubes are built by qilin-jobs)"
    ))
}

#[tonic::async_trait]
impl FlightSqlService for QilinFlightSql {
    type FlightService = QilinFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let token = match header.as_deref() {
            Some(h) => match crate::auth::parse_basic(h) {
                Some((user, pass)) => self
                    .auth
                    .login(&user, &pass)
                    .map_err(crate::auth::unauthenticated)?,
                // A bearer token (or anything else the authenticator understands): re-issue.
                None => {
                    let user = self
                        .auth
                        .authenticate(Some(h))
                        .map_err(crate::auth::unauthenticated)?;
                    self.auth.renew(&user)
                }
            },
            None => {
                // The older Flight form: credentials as a BasicAuth message in the payload.
                let first = request.into_inner().message().await?;
                let creds = first
                    .and_then(|m| BasicAuth::decode(m.payload).ok())
                    .filter(|c| !c.username.is_empty())
                    .ok_or_else(|| {
                        Status::unauthenticated(
                            "no credentials: send 'authorization: Basic base64(user:password)'",
                        )
                    })?;
                self.auth
                    .login(&creds.username, &creds.password)
                    .map_err(crate::auth::unauthenticated)?
            }
        };
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|e| status::internal("building the authorization header", e))?;
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.into(),
        };
        let stream: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::iter(vec![Ok(response)]));
        let mut resp = Response::new(stream);
        resp.metadata_mut().insert("authorization", bearer);
        Ok(resp)
    }

    // Statements ------------------------------------------------------------------------

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        if query.transaction_id.is_some() {
            return Err(read_only("transactions"));
        }
        let access = self.access(&request)?;
        self.statement_info(
            StatementHandle::new(query.query),
            request.into_inner(),
            &access,
        )
        .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = StatementHandle::decode(&ticket.statement_handle)?;
        let access = self.access(&request)?;
        self.run(handle, &access).await
    }

    // Prepared statements -----------------------------------------------------------------

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        if query.transaction_id.is_some() {
            return Err(read_only("transactions"));
        }
        let access = self.access(&request)?;
        let prepared = self
            .engine
            .prepare_as(&access, &query.query)
            .await
            .map_err(|e| {
                self.audit_query(&access, &query.query, &e);
                status::from_engine(&e)
            })?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: StatementHandle::new(query.query).encode()?,
            // The JDBC driver needs the dataset schema to describe result sets up front.
            dataset_schema: ipc_schema(&client_schema(&prepared.schema))?,
            parameter_schema: ipc_schema(&client_schema(&prepared.parameters))?,
        })
    }

    /// Binds parameters by returning a new handle that carries them (the client uses it for
    /// the following GetFlightInfo), instead of remembering them on this instance.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = StatementHandle::decode(&query.prepared_statement_handle)?;
        let stream = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .map_err(|e| status::bad_request("reading the bound parameters", e))?;
        let params = match batches.first() {
            None => None,
            Some(first) => Some(
                concat_batches(&first.schema(), &batches)
                    .map_err(|e| status::bad_request("reading the bound parameters", e))?,
            ),
        };
        let params = params.filter(|p| p.num_rows() > 0);
        if let Some(p) = &params {
            if p.num_rows() > 1 {
                return Err(Status::invalid_argument(format!(
                    "bind one row of parameters per query execution (got {} rows)",
                    p.num_rows()
                )));
            }
        }
        let handle = handle.with_params(params);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode()?),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        let access = self.access(&request)?;
        self.statement_info(handle, request.into_inner(), &access)
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        let access = self.access(&request)?;
        self.run(handle, &access).await
    }

    /// Nothing to free: the handle is the whole statement.
    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    /// Qilin's own actions: cluster notifications, build submissions and the catalog and
    /// security actions of `admin`.
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        // Notifications carry a signature instead of a user (see `auth::RequireAuth`).
        if request.get_ref().r#type == NOTIFY_ACTION {
            self.notified(request).await?;
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        let access = self.access(&request)?;
        let action = request.get_ref();
        if let Some(result) = self.admin.run(&action.r#type, &action.body, &access).await {
            let result = arrow_flight::Result {
                body: result?.into(),
            };
            return Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))));
        }
        match request.get_ref().r#type.as_str() {
            BUILD_ACTION => {
                let job = self.submit_build(request, &access).await?;
                let body = serde_json::to_vec(&job).map_err(|e| status::internal("job JSON", e))?;
                let result = arrow_flight::Result { body: body.into() };
                Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
            }
            other => Err(Status::invalid_argument(format!(
                "unknown action {other:?} (Qilin's own actions: {NOTIFY_ACTION}, {BUILD_ACTION}, \
                 qilin.project.*, qilin.model.*, qilin.cube.*, qilin.table.*, qilin.user.*, \
                 qilin.grant, qilin.acl.*, qilin.apikey.*, qilin.audit; see ListActions)"
            ))),
        }
    }

    /// Qilin's own actions in `ListActions`, after Flight SQL's.
    async fn list_custom_actions(&self) -> Option<Vec<Result<arrow_flight::ActionType, Status>>> {
        let build = (
            BUILD_ACTION,
            "Submit a build job. Body {\"cube\": C, \"start\": D, \"end\": D}.",
        );
        Some(
            std::iter::once(&build)
                .chain(admin::ACTIONS.iter())
                .chain(admin_security::ACTIONS.iter())
                .map(|(t, d)| {
                    Ok(arrow_flight::ActionType {
                        r#type: t.to_string(),
                        description: d.to_string(),
                    })
                })
                .collect(),
        )
    }

    // Server and catalog metadata -----------------------------------------------------------

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(&SQL_INFO)
            .build()
            .map_err(|e| status::internal("building GetSqlInfo", e))?;
        batch_response(batch)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&XDBC_TYPE_INFO).schema();
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(&XDBC_TYPE_INFO)
            .build()
            .map_err(|e| status::internal("building GetXdbcTypeInfo", e))?;
        batch_response(batch)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(query, &metadata::catalogs_schema(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        batch_response(metadata::catalogs(&self.access(&request)?)?)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::db_schemas_schema(query.clone());
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let access = self.access(&request)?;
        batch_response(metadata::db_schemas(&self.engine, &access, query)?)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::tables_schema(query.clone());
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let access = self.access(&request)?;
        batch_response(metadata::tables(&self.engine, &access, query)?)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::table_types_schema(query);
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        batch_response(metadata::table_types(query)?)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(query, &metadata::PRIMARY_KEYS_SCHEMA, request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let access = self.access(&request)?;
        batch_response(metadata::primary_keys(&self.engine, &access, query)?)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(query, &metadata::FOREIGN_KEYS_SCHEMA, request.into_inner())
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let access = self.access(&request)?;
        batch_response(metadata::exported_keys(&self.engine, &access, query)?)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(query, &metadata::FOREIGN_KEYS_SCHEMA, request.into_inner())
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let access = self.access(&request)?;
        batch_response(metadata::imported_keys(&self.engine, &access, query)?)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(query, &metadata::FOREIGN_KEYS_SCHEMA, request.into_inner())
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let access = self.access(&request)?;
        batch_response(metadata::cross_reference(&self.engine, &access, query)?)
    }

    // What a read-only server refuses, with a message that says so -----------------------------

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("updates"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("bulk ingestion"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("updates"))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(read_only("transactions"))
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        Err(read_only("transactions"))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(read_only("savepoints"))
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        Err(read_only("savepoints"))
    }

    /// Our SqlInfo is static (see `sql_info`), so nothing registers at run time.
    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
